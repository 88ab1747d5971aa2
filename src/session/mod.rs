//! The trust session: a short-lived API every machine serves on :9443 while a
//! run lasts (there is no resident daemon).
//!
//! 1. A joiner sends its [`types::JoinIntent`] to the initiator, authenticated
//!    by an HMAC keyed from the passphrase; the TLS client certificate of that
//!    request must be the certificate in the intent, and the joiner remembers
//!    the certificate the initiator presented.
//! 2. The initiator answers each accepted joiner with its own signed intent,
//!    over TLS pinned to the joiner's certificate, from the certificate the
//!    joiner captured; all at once, with one signature made when the session
//!    opened ([`SignedIntent`]). From then on both sides know each other's certificate
//!    and every further call is mutual TLS checked against those pins.
//! 3. The initiator then reads each joiner's LXD through the joiner's proxy
//!    and the joiner's own report on its disks in use (`/1.0/machine/disks`),
//!    asks it to join the LXD cluster, and finally stops its session.
//!
//! Nobody without the passphrase can get an intent accepted, and nobody
//! without a pinned certificate can use any other endpoint.

pub mod client;
pub mod server;
pub mod types;

pub use client::{PeerSession, SignedIntent};
pub use server::{JoinHandler, SessionConfig, SessionEvent, SessionRole, SessionServer};
pub use types::*;

#[cfg(test)]
mod attacks;
#[cfg(test)]
mod tests;
