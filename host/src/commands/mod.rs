//! One module per `archai` subcommand: its arguments (clap) and its body. main.rs only parses
//! and dispatches.
pub mod bench;
pub mod common;
pub mod compare;
pub mod config;
pub mod data;
pub mod devices;
pub mod launch;
pub mod plugins;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod search;
pub mod stats;
pub mod train;
