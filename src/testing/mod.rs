//! Test support, compiled only into the library's unit tests: never shipped.

pub mod fake_lxd;
pub mod fake_microcluster;

pub use fake_lxd::{Call, FakeLxd};
pub use fake_microcluster::FakeMicrocluster;

use std::path::{Path, PathBuf};

use crate::clients::Transport;
use crate::clients::microcluster::{Service, SocketError};
use crate::sys::services::ServiceSockets;
use crate::trust::TrustError;

/// A machine's control sockets: the fakes given, the other services absent.
#[derive(Default, Clone)]
pub struct FakeSockets(Vec<FakeMicrocluster>);

impl FakeSockets {
    pub fn with(mut self, fake: &FakeMicrocluster) -> Self {
        self.0.push(fake.clone());
        self
    }

    fn fake(&self, service: Service) -> Option<&FakeMicrocluster> {
        self.0.iter().find(|f| f.service() == service)
    }
}

impl ServiceSockets for FakeSockets {
    fn find(&self, service: Service) -> Result<Option<PathBuf>, SocketError> {
        Ok(self
            .fake(service)
            .map(|_| service.default_socket().to_path_buf()))
    }

    fn connect(&self, service: Service, _: &Path) -> Result<Transport, TrustError> {
        Ok(self
            .fake(service)
            .expect("connect follows find")
            .transport())
    }
}

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use crate::clients::BackendError;

/// How an in-memory server answers its transport: the path from `api` on
/// (whatever prefix the transport adds), the body as JSON, and the reply
/// `answer` gives, as bytes; `None` is a connection that ends without one.
fn serve_json(
    url: &str,
    api: &str,
    body: Option<Vec<u8>>,
    answer: impl FnOnce(&str, Value) -> Option<Reply>,
) -> BoxFuture<'static, Result<(u16, Bytes), BackendError>> {
    let path = url.find(api).map_or(url, |at| &url[at..]);
    let body = body.map_or(Value::Null, |b| {
        serde_json::from_slice(&b).unwrap_or(Value::Null)
    });
    let answered = answer(path, body).map(|(status, reply)| {
        let bytes = Bytes::from(serde_json::to_vec(&reply).expect("JSON values always serialize"));
        (status, bytes)
    });
    Box::pin(async move {
        answered.ok_or_else(|| "connection closed before the answer was complete".into())
    })
}

/// What a fake answers: the HTTP status and the JSON body.
type Reply = (u16, Value);

/// The LXD-style envelope both LXD and microcluster use: a `sync` success...
fn sync(metadata: Value) -> Reply {
    let body = json!({"type": "sync", "status": "Success", "status_code": 200, "operation": "", "error_code": 0, "error": "", "metadata": metadata});
    (200, body)
}

/// ... and an error, whose `error_code` is the HTTP status.
fn error(code: u16, message: impl Into<String>) -> Reply {
    let body = json!({"type": "error", "status": "", "status_code": 0, "operation": "", "error_code": code, "error": message.into(), "metadata": null});
    (code, body)
}
