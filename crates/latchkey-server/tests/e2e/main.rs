//! End-to-end suite: the real broker, the real embedded S3 store, SQLite,
//! and real HTTP clients, all on loopback ports chosen by the OS.

mod auth;
mod common;
mod enforce;
mod idempotent;
mod ownership;
mod put_flow;
mod secrets;
mod workers;
