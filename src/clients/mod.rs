//! One client per service, each with its wire types apart from its calls, all
//! speaking through one [`transport::Transport`] seam: a local unix socket, HTTPS
//! with a client certificate, or a peer's session proxy during a run.

pub mod error;
pub mod lxd;
pub mod microceph;
pub mod microcluster;
pub mod microovn;
pub mod token;
pub mod transport;

pub use error::ApiError;
pub use transport::{BackendError, HttpBackend, Transport};
