//! Operations: the real `regauth` binary reloading its config (rename, in-place write,
//! Kubernetes-style symlink swap, SIGHUP), refusing broken configs while the old one keeps
//! serving, revoking refresh tokens of removed users, serving through systemd-style
//! inherited sockets, draining on SIGTERM, exporting Prometheus metrics, guarding its key
//! and socket files, warning about or refusing risky settings; and the shipped systemd
//! units checked by `systemd-analyze`.
//!
//! Every test runs its own regauth on random loopback ports in its own temp dir; waits are
//! polls with deadlines. `systemd-analyze` (Debian package `systemd`) must be installed.
//!
//! Layout: `ops/common.rs` (fixtures and helpers on top of the shared `support` harness),
//! `ops/prometheus.rs` (a strict reader of the text format), then one file per topic.

mod support;

#[path = "ops/budgets.rs"]
mod budgets;
#[path = "ops/common.rs"]
mod common;
#[path = "ops/metrics.rs"]
mod metrics;
#[path = "ops/prometheus.rs"]
mod prometheus;
#[path = "ops/reload.rs"]
mod reload;
#[path = "ops/serving.rs"]
mod serving;
#[path = "ops/settings.rs"]
mod settings;
#[path = "ops/systemd.rs"]
mod systemd;
