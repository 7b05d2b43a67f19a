//! End-to-end tests: the store served on 127.0.0.1:0, driven by aws-sdk-s3 and
//! raw HTTP (reqwest, a bare TCP socket) the way browsers and phones use it.
//! One test binary so aws-sdk-s3 is linked once.

mod common;
mod cors;
mod disk;
mod guards;
mod in_process;
mod index;
mod multipart;
mod objects;
mod pieces;
mod post;
mod post_props;
mod presigned;
mod props;
