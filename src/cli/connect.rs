//! From a database URL to a pool: libpq's `sslmode` meanings, which tokio-postgres's own parser
//! does not know beyond disable/prefer/require, with rustls.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as WireSslMode;

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "invalid sslmode {other:?}: use disable, allow, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }
}

/// A connection string with the TLS settings taken out.
#[derive(Debug, PartialEq)]
pub(crate) struct Target {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) ssl_mode: SslMode,
    pub(crate) root_cert: Option<PathBuf>,
}

/// Parses a URL (`postgres://...?sslmode=verify-full&sslrootcert=ca.pem`) or a key=value string.
pub(crate) fn parse(conninfo: &str) -> Result<Target, String> {
    let mut ssl_mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => ssl_mode = Some(value.parse::<SslMode>()?),
            "sslrootcert" => root_cert = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        match conninfo.split_once('?') {
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(key, &percent_decode(value))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => conninfo.to_owned(),
        }
    } else {
        let mut kept = Vec::new();
        for word in conninfo.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            if !take(key.trim(), value.trim_matches('\''))? {
                kept.push(word);
            }
        }
        kept.join(" ")
    };
    let mut config = tokio_postgres::Config::from_str(&rest)
        .map_err(|error| format!("invalid database URL: {error}"))?;
    // libpq: with a root certificate and no sslmode, the default is verify-ca.
    let ssl_mode = match (ssl_mode, &root_cert) {
        (Some(mode), _) => mode,
        (None, Some(_)) => SslMode::VerifyCa,
        (None, None) => SslMode::Prefer,
    };
    config.ssl_mode(match ssl_mode {
        SslMode::Disable => WireSslMode::Disable,
        // tokio-postgres cannot try plain first; trying TLS first is the closest.
        SslMode::Allow | SslMode::Prefer => WireSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireSslMode::Require,
    });
    if config.get_application_name().is_none() {
        config.application_name("pgratchet");
    }
    Ok(Target {
        config,
        ssl_mode,
        root_cert,
    })
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = (bytes[index] == b'%')
            .then(|| value.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A pool of one connection for the target, with TLS as its sslmode says.
pub(crate) fn pool(target: &Target) -> Result<Pool, String> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if target.ssl_mode == SslMode::Disable {
        Manager::from_config(target.config.clone(), tokio_postgres::NoTls, manager_config)
    } else {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(target)?);
        Manager::from_config(target.config.clone(), tls, manager_config)
    };
    Pool::builder(manager)
        .max_size(2)
        .build()
        .map_err(|error| format!("could not build the connection pool: {error}"))
}

fn tls_config(target: &Target) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("could not set up TLS: {error}"))?;
    // libpq: require with a root certificate behaves as verify-ca.
    let verify = match (target.ssl_mode, &target.root_cert) {
        (SslMode::VerifyFull, _) => Some(true),
        (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => Some(false),
        _ => None,
    };
    let config = match verify {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth(),
        Some(check_name) => {
            let roots = Arc::new(roots(target.root_cert.as_ref())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|error| format!("could not set up certificate verification: {error}"))?;
            if check_name {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                    .with_no_client_auth()
            }
        }
    };
    Ok(config)
}

fn roots(root_cert: Option<&PathBuf>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|error| format!("cannot read sslrootcert {}: {error}", path.display()))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|error| {
                    format!("invalid certificate in {}: {error}", path.display())
                })?;
                store.add(certificate).map_err(|error| {
                    format!("invalid certificate in {}: {error}", path.display())
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for certificate in found.certs {
                // One unusable system certificate should not stop the others.
                let _ = store.add(certificate);
            }
        }
    }
    if store.is_empty() {
        return Err("no root certificates found: pass sslrootcert=<file> in the URL".to_owned());
    }
    Ok(store)
}

/// `sslmode=require` without a root certificate: encrypted, not authenticated (libpq's meaning).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libpq_sslmodes_from_urls() {
        let target = parse("postgres://u@db.example:5433/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5").expect("parse");
        assert_eq!(target.ssl_mode, SslMode::VerifyFull);
        assert_eq!(target.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(target.config.get_ssl_mode(), WireSslMode::Require);
        assert_eq!(target.config.get_dbname(), Some("app"));
        assert_eq!(
            target.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(5))
        );
        for (mode, expected, wire) in [
            ("disable", SslMode::Disable, WireSslMode::Disable),
            ("allow", SslMode::Allow, WireSslMode::Prefer),
            ("prefer", SslMode::Prefer, WireSslMode::Prefer),
            ("require", SslMode::Require, WireSslMode::Require),
            ("verify-ca", SslMode::VerifyCa, WireSslMode::Require),
        ] {
            let target = parse(&format!("postgres://u@h/d?sslmode={mode}")).expect("parse");
            assert_eq!(
                (target.ssl_mode, target.config.get_ssl_mode()),
                (expected, wire)
            );
        }
    }

    #[test]
    fn reads_key_value_strings_and_defaults() {
        let target = parse("host=localhost dbname=app sslmode=require").expect("parse");
        assert_eq!(target.ssl_mode, SslMode::Require);
        assert_eq!(
            parse("postgres://u@h/d").expect("parse").ssl_mode,
            SslMode::Prefer
        );
        let target = parse("postgres://u@h/d?sslrootcert=ca.pem").expect("parse");
        assert_eq!(target.ssl_mode, SslMode::VerifyCa);
    }

    #[test]
    fn refuses_unknown_sslmodes() {
        let error = parse("postgres://u@h/d?sslmode=verify").expect_err("refused");
        assert!(error.contains("invalid sslmode \"verify\""), "{error}");
    }

    #[test]
    fn verify_modes_need_readable_roots() {
        let target = parse("postgres://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .expect("parse");
        let error = pool(&target).expect_err("no such file");
        assert!(
            error.contains("cannot read sslrootcert /nonexistent/ca.pem"),
            "{error}"
        );
    }
}
