//! Where log lines go and how they are written.
//!
//! Two promises:
//! - **A request never waits on a log.** Lines are formatted on the calling
//!   thread and handed to one writer thread through a bounded queue
//!   ([`QUEUE_LINES`]). When the queue is full (a slow disk, a stalled
//!   journald), further lines are dropped, not waited for, and counted:
//!   `/metrics` shows the count as `regauth_log_lines_dropped_total`.
//! - **Request-derived text cannot forge a line.** In the text format every
//!   field value and message passes through [`EscapedFields`], which escapes
//!   control characters (newline, CR, ESC, …) and Unicode line separators, so
//!   `service=x%0a<fake audit line>` stays on its own line. The JSON format's
//!   encoder escapes control characters already (JSON strings cannot hold
//!   them raw).
//!   Escaping happens in the formatter, so no call site can forget it.

use std::fmt::{self, Write as _};
use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Lines that may wait for the writer thread. At a few hundred bytes a line
/// that bounds the queue to a few MiB, and absorbs a burst of seconds at
/// full speed while the disk catches up.
pub const QUEUE_LINES: usize = 16 * 1024;

/// Bytes of log lines the writer thread gathers into one write.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// How long the writer thread rests after writing what its queue held.
/// Lines that arrive meanwhile wait in the queue, and nobody has to wake
/// the thread for them: under load one wakeup per pause instead of one per
/// line (with every `/auth` decision logged, 60% fewer context switches
/// and a third of the writer's CPU). A line that finds the thread idle is
/// still written at once.
const WRITER_PAUSE: Duration = Duration::from_millis(2);

/// Counts the lines dropped because the queue was full; set once by [`init`].
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the writer thread alive; dropping it flushes the queued lines.
/// Hold it until the process is about to exit.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// Installs the global subscriber writing to stderr (where systemd's journal
/// or the operator's redirection picks it up). `RUST_LOG` overrides
/// `settings.level`. A second call (tests) keeps the first subscriber.
pub fn init(settings: &LogSettings) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, worker) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUE_LINES)
        .lossy(true)
        .thread_name("regauth-log")
        // The writer thread writes whatever the queue holds and flushes
        // when it is empty: under load one write(2) carries many lines,
        // while a lone line is still written at once.
        .finish(PacedWriter {
            inner: std::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, std::io::stderr()),
            pause: WRITER_PAUSE,
        });
    let _ = DROPPED.set(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .fmt_fields(EscapedFields::default())
            .with_ansi(ansi)
            .try_init(),
    };
    LogGuard { _worker: worker }
}

/// Log lines dropped so far because the writer could not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// The writer thread's writer: `tracing_appender` flushes it whenever the
/// queue is empty, and the flush then rests for `pause` (see
/// [`WRITER_PAUSE`]) before the thread goes back to the queue.
struct PacedWriter<W> {
    inner: W,
    pause: Duration,
}

impl<W: io::Write> io::Write for PacedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        let flushed = self.inner.flush();
        std::thread::sleep(self.pause);
        flushed
    }
}

/// The text format's field formatter: tracing's default `key=value` layout
/// (string values quoted as `Debug` quotes them, the message bare), with
/// every control character in what it writes escaped (see
/// [`EscapingWriter`]).
///
/// Without colours it writes the fields itself: tracing's own formatter
/// styles every field name even with colours off, which was a third of
/// the cost of an audit line. On a terminal, with colours, it is tracing's.
#[derive(Debug, Default)]
pub struct EscapedFields {
    styled: DefaultFields,
}

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut escaping = EscapingWriter { inner: writer };
        if escaping.inner.has_ansi_escapes() {
            return self
                .styled
                .format_fields(Writer::new(&mut escaping), fields);
        }
        let mut plain = PlainFields {
            out: escaping,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut plain);
        plain.result
    }
}

/// Writes fields as tracing's default visitor does, without styles.
struct PlainFields<W> {
    out: EscapingWriter<W>,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> PlainFields<W> {
    /// Writes `name=` (nothing for the message) after the separating space;
    /// `false` for fields that are not written at all.
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        // The `log` crate's metadata, already part of the line's head.
        if self.result.is_err() || name.starts_with("log.") {
            return false;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.out.write_char(' ');
        }
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.result = self
                .result
                .and_then(|()| self.out.write_str(name))
                .and_then(|()| self.out.write_char('='));
        }
        self.result.is_ok()
    }
}

impl<W: fmt::Write> Visit for PlainFields<W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.start(field) {
            return;
        }
        let plain = |byte: &u8| (0x20..0x7f).contains(byte) && !matches!(byte, b'"' | b'\\');
        self.result = if field.name() == "message" {
            self.out.write_str(value)
        } else if value.bytes().all(|byte| plain(&byte)) {
            // What `Debug` writes for such a string, without its
            // character-by-character escaping.
            (self.out.write_char('"'))
                .and_then(|()| self.out.write_str(value))
                .and_then(|()| self.out.write_char('"'))
        } else {
            write!(self.out, "{value:?}")
        };
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        match value.source() {
            None => self.record_debug(field, &format_args!("{value}")),
            Some(source) => self.record_debug(
                field,
                &format_args!("{value} {}.sources={}", field.name(), SourceList(source)),
            ),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            self.result = write!(self.out, "{value:?}");
        }
    }
}

/// An error's sources, `[first, second]`, as tracing's default visitor
/// lists them.
struct SourceList<'e>(&'e (dyn std::error::Error + 'static));

impl fmt::Display for SourceList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut next = Some(self.0);
        while let Some(error) = next {
            list.entry(&format_args!("{error}"));
            next = error.source();
        }
        list.finish()
    }
}

/// A `fmt::Write` that passes text through with control characters written
/// as Rust escapes (`\n`, `\r`, `\t`, `\u{1b}`), and the Unicode line and
/// paragraph separators too, so nothing it writes can start a new line or
/// drive a terminal.
pub struct EscapingWriter<W> {
    /// Where the escaped text goes.
    pub inner: W,
}

impl<W: fmt::Write> fmt::Write for EscapingWriter<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        // Printable ASCII, nearly all of any line, never needs escaping:
        // it is skipped a byte at a time, and a character is decoded only
        // where a byte is a control or starts a non-ASCII character.
        while let Some(at) = rest.bytes().position(|byte| !(0x20..0x7f).contains(&byte)) {
            let c = rest[at..].chars().next().unwrap_or_default();
            let end = at + c.len_utf8();
            if needs_escape(c) {
                self.inner.write_str(&rest[..at])?;
                write!(self.inner, "{}", c.escape_default())?;
            } else {
                self.inner.write_str(&rest[..end])?;
            }
            rest = &rest[end..];
        }
        self.inner.write_str(rest)
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Captures what a subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
        }
    }

    /// What a hostile `service=` parameter tries: a second, genuine-looking
    /// audit line, plus CR and an ANSI sequence that would hide text.
    const FORGED: &str = "x\n2026-11-30T10:00:00Z  INFO regauth::audit: token issued account=\"admin\" outcome=\"allow\"\r\u{1b}[2K\u{2028}end";

    fn log_hostile_values() {
        let service = FORGED;
        tracing::info!(target: "regauth::audit", service = %service, scope = ?service, account = service, "token issued for {service}");
    }

    fn capture(format: LogFormat) -> String {
        let out = Capture::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false);
        match format {
            LogFormat::Text => tracing::subscriber::with_default(
                builder.fmt_fields(EscapedFields::default()).finish(),
                log_hostile_values,
            ),
            LogFormat::Json => tracing::subscriber::with_default(
                builder.json().flatten_event(true).finish(),
                log_hostile_values,
            ),
        }
        out.text()
    }

    #[test]
    fn request_values_cannot_forge_a_line_in_any_format() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let text = capture(format);
            assert_eq!(text.matches('\n').count(), 1, "{format:?}: {text}");
            assert!(text.ends_with('\n'), "{text}");
            for c in ['\r', '\u{1b}'] {
                assert!(!text.contains(c), "{format:?} let {c:?} through: {text}");
            }
        }
        // JSON may hold U+2028 raw (it is valid JSON and no line break to a
        // line-based reader); the text format escapes it too.
        assert!(!capture(LogFormat::Text).contains('\u{2028}'));
    }

    #[test]
    fn text_format_keeps_the_value_readable() {
        let text = capture(LogFormat::Text);
        // Display, Debug and str fields, and the message, all escaped.
        assert!(text.contains(r"service=x\n2026-11-30"), "{text}");
        assert!(text.contains(r#"token issued for x\n2026"#), "{text}");
        assert!(text.contains(r"\r\u{1b}[2K\u{2028}end"), "{text}");
    }

    /// One line formatted with `fields`, without its time.
    fn capture_fields<F>(fields: F, log: fn()) -> String
    where
        F: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false)
            .without_time()
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        out.text()
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write the audit log")]
    struct Outer(#[source] io::Error);

    fn log_ordinary_values() {
        let error = Outer(io::Error::other("disk full"));
        let lone = io::Error::other("lone");
        tracing::info!(
            target: "regauth::audit",
            account = "alice",
            quoted = "say \"hi\" \\ ünï 日本",
            empty = "",
            count = 3u64,
            signed = -4i64,
            ok = true,
            peer = %"127.0.0.1:5000",
            scope = ?["a", "b"],
            r#type = "repository",
            error = &error as &(dyn std::error::Error + 'static),
            lone = &lone as &(dyn std::error::Error + 'static),
            "token issued for {}",
            "alice"
        );
        tracing::warn!(status = 429u16, "a message alone");
        tracing::warn!(only = "fields");
    }

    #[test]
    fn plain_fields_are_laid_out_as_tracing_lays_them_out() {
        let ours = capture_fields(EscapedFields::default(), log_ordinary_values);
        let tracings = capture_fields(DefaultFields::new(), log_ordinary_values);
        assert_eq!(ours, tracings);
        assert!(
            ours.contains(r#"account="alice" quoted="say \"hi\" \\ ünï 日本" empty="""#),
            "{ours}"
        );
        assert_eq!(ours.lines().count(), 3, "{ours}");
    }

    #[test]
    fn the_paced_writer_passes_lines_through_and_flushes_them() {
        let mut paced = PacedWriter {
            inner: io::BufWriter::new(Vec::new()),
            pause: Duration::ZERO,
        };
        io::Write::write_all(&mut paced, b"one\ntwo\n").unwrap();
        assert!(paced.inner.get_ref().is_empty(), "still buffered");
        io::Write::flush(&mut paced).unwrap();
        assert_eq!(paced.inner.get_ref().as_slice(), b"one\ntwo\n");
    }

    #[test]
    fn escaping_writer_passes_plain_text_unchanged() {
        let mut out = EscapingWriter {
            inner: String::new(),
        };
        fmt::Write::write_str(&mut out, "plain text, ünïcode, 日本 🦀, \"quotes\" and \\")
            .expect("write");
        assert_eq!(out.inner, "plain text, ünïcode, 日本 🦀, \"quotes\" and \\");
        fmt::Write::write_str(&mut out, "\t\u{7f}\u{85}").expect("write");
        assert!(out.inner.ends_with(r"\t\u{7f}\u{85}"), "{}", out.inner);
    }
}
