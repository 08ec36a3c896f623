//! The bare server `benches/run.sh` measures regauth against: hyper HTTP/1
//! on tokio's multi-threaded runtime, answering 200 with an empty body to
//! every request. Built with the same profile as regauth, it shows what the
//! machine, the kernel and hyper cost before regauth does any work.
//!
//! `baseline ADDRESS` serves until killed. Without an address (as `cargo
//! bench` runs every bench target) it exits at once.

use std::convert::Infallible;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn main() {
    let Some(address) = std::env::args().nth(1).filter(|a| !a.starts_with('-')) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .expect("bind the baseline address");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
