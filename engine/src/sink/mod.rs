//! Outputs: publishing alerts and dead letters, and the persistent alert state.

mod publish;
pub mod state;

pub use publish::{Outbound, Publisher};
