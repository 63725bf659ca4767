//! End-to-end tests against a real nats-server (one per test). All integration tests build
#![allow(unreachable_pub)] // a test binary has no public API
//! into this one binary.

mod alerts;
mod archive;
mod cli;
mod creds;
mod dead_letters;
mod edge;
mod faults;
mod harness;
mod mqtt;
mod observe;
mod pipelines;
mod readme;
mod recovery;
mod replay;
mod scale;
mod schemas;
mod security;
mod speed;
mod topology;
mod trends;
mod vibration;
mod worker;
