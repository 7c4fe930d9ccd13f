//! See `segstore::fuzzing::path_parse` for the input layout and the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    segstore::fuzzing::path_parse(data);
});
