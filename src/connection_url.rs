//! Postgres connection URLs as secrets: parsed once, compared and hashed by their text, and
//! never printed. `Debug` is redacted and [`ConnectionUrl::label`] gives a log-safe
//! `host:port/dbname`.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// How the connection uses TLS, following libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, without certificate checks (libpq's default).
    Prefer,
    /// TLS required, without certificate checks (as libpq does without a root certificate).
    Require,
    /// TLS required; the server certificate must chain to a trusted root.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must also name the host connected to.
    VerifyFull,
}

impl FromStr for TlsMode {
    type Err = UrlError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            _ => Err(UrlError::SslMode),
        }
    }
}

/// Why a connection URL was refused. Deliberately carries no part of the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The text is not a Postgres URL or key/value connection string.
    #[error("must be a Postgres connection URL (postgres://user:password@host:port/dbname)")]
    Malformed,
    /// `sslmode` holds a value outside libpq's supported set.
    #[error("sslmode must be one of disable, prefer, require, verify-ca, verify-full")]
    SslMode,
}

/// A parsed Postgres connection URL. The text is a secret (it usually holds a password).
/// Cheap to clone: requests carry it as part of their source key.
#[derive(Clone)]
pub struct ConnectionUrl(Arc<Parsed>);

struct Parsed {
    raw: String,
    config: tokio_postgres::Config,
    tls_mode: TlsMode,
    root_cert: Option<PathBuf>,
}

impl ConnectionUrl {
    /// Parses a `postgres://` URL or a libpq key/value string, taking `sslmode` and
    /// `sslrootcert` out so that all of libpq's TLS modes are understood.
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(UrlError::Malformed);
        }
        let (rest, tls_params) =
            if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
                split_url_tls_params(raw)
            } else {
                split_key_value_tls_params(raw)?
            };
        let tls_mode = match tls_params.sslmode {
            Some(mode) => mode.parse()?,
            None => TlsMode::Prefer,
        };
        let config = tokio_postgres::Config::from_str(&rest).map_err(|_| UrlError::Malformed)?;
        if config.get_hosts().is_empty() {
            return Err(UrlError::Malformed);
        }
        Ok(Self(Arc::new(Parsed {
            raw: raw.to_owned(),
            config,
            tls_mode,
            root_cert: tls_params.sslrootcert.map(PathBuf::from),
        })))
    }

    /// The connection settings without the TLS parameters.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.0.config
    }

    /// The TLS mode from `sslmode` (default `prefer`, as in libpq).
    pub(crate) fn tls_mode(&self) -> TlsMode {
        self.0.tls_mode
    }

    /// The CA file from `sslrootcert`, if given.
    pub fn root_cert(&self) -> Option<&PathBuf> {
        self.0.root_cert.as_ref()
    }

    /// The first host's name (without port), as used for access checks.
    pub fn host(&self) -> Option<String> {
        self.0.config.get_hosts().first().map(host_name)
    }

    /// Every `(host, port)` the connection may try, in order (libpq's multi-host lists).
    pub(crate) fn endpoints(&self) -> Vec<(String, u16)> {
        let ports = self.0.config.get_ports();
        self.0
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                (host_name(host), port)
            })
            .collect()
    }

    /// Whether `hostaddr` overrides where the host names actually connect.
    pub(crate) fn has_hostaddr(&self) -> bool {
        !self.0.config.get_hostaddrs().is_empty()
    }

    /// `host:port/dbname`: safe for logs and client messages (no user, no password).
    pub fn label(&self) -> String {
        let host = self.host().unwrap_or_default();
        let port = self.0.config.get_ports().first().copied().unwrap_or(5432);
        let dbname = self
            .0
            .config
            .get_dbname()
            .or(self.0.config.get_user())
            .unwrap_or("");
        format!("{host}:{port}/{dbname}")
    }
}

fn host_name(host: &tokio_postgres::config::Host) -> String {
    match host {
        tokio_postgres::config::Host::Tcp(name) => name.clone(),
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectionUrl(<redacted>)")
    }
}

impl PartialEq for ConnectionUrl {
    fn eq(&self, other: &Self) -> bool {
        self.0.raw == other.0.raw
    }
}

impl Eq for ConnectionUrl {}

impl Hash for ConnectionUrl {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.raw.hash(state);
    }
}

#[derive(Default)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl TlsParams {
    /// Keeps the value if `key` is one of the TLS keys; returns whether it was taken.
    fn take(&mut self, key: &str, value: String) -> bool {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            _ => return false,
        }
        true
    }
}

fn split_url_tls_params(raw: &str) -> (String, TlsParams) {
    let mut params = TlsParams::default();
    let Some((base, query)) = raw.split_once('?') else {
        return (raw.to_owned(), params);
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            !params.take(key, percent_decode(value))
        })
        .collect();
    if kept.is_empty() {
        (base.to_owned(), params)
    } else {
        (format!("{base}?{}", kept.join("&")), params)
    }
}

/// Splits a libpq key/value string (`host=h port=5432 password='a b'`) into its pairs,
/// following libpq's quoting: values may be single-quoted, and `\\` escapes the next
/// character; whitespace around `=` is allowed.
fn key_value_pairs(raw: &str) -> Result<Vec<(String, String)>, UrlError> {
    let mut pairs = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next() != Some('=') {
            return Err(UrlError::Malformed);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => value.push(chars.next().ok_or(UrlError::Malformed)?),
                Some('\'') if quoted => break,
                Some(c) if !quoted && c.is_whitespace() => break,
                Some(c) => value.push(c),
                None if quoted => return Err(UrlError::Malformed),
                None => break,
            }
        }
        pairs.push((key, value));
    }
}

fn split_key_value_tls_params(raw: &str) -> Result<(String, TlsParams), UrlError> {
    let mut params = TlsParams::default();
    let kept: Vec<String> = key_value_pairs(raw)?
        .into_iter()
        .filter(|(key, value)| !params.take(key, value.clone()))
        .map(|(key, value)| {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            format!("{key}='{escaped}'")
        })
        .collect();
    Ok((kept.join(" "), params))
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| value.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_tls_parameters_are_taken_out_and_the_rest_is_kept() {
        let url = ConnectionUrl::parse(
            "postgres://scaler:s3cret@db.example:6432/app_sys?sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(url.tls_mode(), TlsMode::VerifyFull);
        assert_eq!(url.root_cert(), Some(&PathBuf::from("/etc/ca.pem")));
        assert_eq!(url.label(), "db.example:6432/app_sys");
        assert_eq!(
            url.config().get_connect_timeout(),
            Some(&std::time::Duration::from_secs(5))
        );
    }

    #[test]
    fn key_value_strings_are_understood() {
        let url = ConnectionUrl::parse("host=localhost port=5433 dbname=x user=u sslmode=require")
            .unwrap();
        assert_eq!(url.tls_mode(), TlsMode::Require);
        assert_eq!(url.label(), "localhost:5433/x");
    }

    #[test]
    fn key_value_quoting_follows_libpq() {
        let url = ConnectionUrl::parse(
            "host = db  dbname=x user=u password='a  b\\'c' sslmode = verify-ca \
             sslrootcert='/etc/my ca.pem'",
        )
        .unwrap();
        assert_eq!(url.tls_mode(), TlsMode::VerifyCa);
        assert_eq!(url.root_cert(), Some(&PathBuf::from("/etc/my ca.pem")));
        assert_eq!(url.config().get_password(), Some(&b"a  b'c"[..]));
        assert_eq!(url.label(), "db:5432/x");
        assert_eq!(
            ConnectionUrl::parse("host=h password='unterminated").unwrap_err(),
            UrlError::Malformed
        );
    }

    #[test]
    fn default_tls_mode_is_prefer_like_libpq() {
        let url = ConnectionUrl::parse("postgresql://u@h/db").unwrap();
        assert_eq!(url.tls_mode(), TlsMode::Prefer);
    }

    #[test]
    fn bad_inputs_are_refused_without_echoing_them() {
        assert_eq!(ConnectionUrl::parse("").unwrap_err(), UrlError::Malformed);
        assert_eq!(
            ConnectionUrl::parse("postgres://u:pw@h/db?sslmode=sometimes").unwrap_err(),
            UrlError::SslMode
        );
        let err = ConnectionUrl::parse("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let url = ConnectionUrl::parse("postgres://u:hunter2@h/db").unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(!url.label().contains("hunter2"));
    }
}
