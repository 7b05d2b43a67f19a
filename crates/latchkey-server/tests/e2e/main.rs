//! End-to-end suite: the real broker, the real embedded S3 store, SQLite,
//! and real HTTP clients, all on loopback ports chosen by the OS.

mod adversarial;
mod attach;
mod auth;
mod common;
mod connections;
mod enforce;
mod events;
mod faults;
mod idempotent;
mod limits;
mod mode_credentials;
mod mode_headers;
mod mode_multipart;
mod mode_post;
mod mode_proxy;
mod outage;
mod ownership;
mod photos;
mod put_flow;
mod secrets;
mod tus;
mod workers;
