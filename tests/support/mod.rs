//! Helpers shared by the integration tests. Each test binary includes this with
//! `mod support;` and uses what it needs, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod child;
pub mod history;
pub mod moto;
pub mod proxy;
