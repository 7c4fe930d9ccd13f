//! See `segstore::fuzzing::manifest_decode` for the input layout and the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    segstore::fuzzing::manifest_decode(data);
});
