//! TLS for wss:// links (client) and the optional TLS front of the server, with rustls.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_rustls::rustls::{self, pki_types};
use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls_pki_types::pem::PemObject;

use crate::{ClientTls, ServerTls, TlsError};

/// ring's suites with AES-128-GCM ahead of AES-256-GCM. rustls lists AES-256 first, and a
/// rustls server follows the client's order, so our own client and server settled on AES-256:
/// 14 rounds per block against 10, where 128-bit keys are all a TLS link needs. Go's
/// crypto/tls (the reference, most CDNs) and Mozilla's "modern" profile put AES-128-GCM first
/// too. Nothing is removed, so every peer that worked still does.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .sort_by_key(|s| (!is_tls13(s), !is_aes128_gcm(s.suite())));
    Arc::new(p)
}

fn is_tls13(suite: &rustls::SupportedCipherSuite) -> bool {
    matches!(suite, rustls::SupportedCipherSuite::Tls13(_))
}

fn is_aes128_gcm(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as C;
    matches!(
        suite,
        C::TLS13_AES_128_GCM_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    )
}

fn setup(what: &'static str) -> impl FnOnce(rustls::Error) -> TlsError {
    move |e| TlsError::Setup {
        what,
        source: Arc::new(e),
    }
}

fn file_error<'a>(
    what: &'static str,
    path: &'a std::path::Path,
) -> impl Fn(pki_types::pem::Error) -> TlsError + 'a {
    move |e| TlsError::File {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The client side: Mozilla's roots, plus a CA file, or (explicitly) no verification.
pub fn connector(tls: &ClientTls) -> Result<TlsConnector, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(setup("TLS versions"))?;
    let config = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut pinned = Vec::new();
        if let Some(path) = &tls.ca_file {
            let certs = pki_types::CertificateDer::pem_file_iter(path)
                .map_err(file_error("CA file", path))?;
            for c in certs {
                let c = c.map_err(file_error("CA file", path))?;
                roots.add(c.clone()).map_err(|e| TlsError::File {
                    what: "CA file",
                    path: path.clone(),
                    reason: format!("unusable certificate: {e}"),
                })?;
                pinned.push(c);
            }
        }
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .map_err(|e| TlsError::File {
            what: "CA file",
            path: tls.ca_file.clone().unwrap_or_default(),
            reason: e.to_string(),
        })?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinning { webpki, pinned }))
            .with_no_client_auth()
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The server side, from PEM files.
pub fn acceptor(tls: &ServerTls) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<_> = pki_types::CertificateDer::pem_file_iter(&tls.cert)
        .map_err(file_error("certificate", &tls.cert))?
        .collect::<Result<_, _>>()
        .map_err(file_error("certificate", &tls.cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: tls.cert.clone(),
        });
    }
    let key = pki_types::PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(file_error("private key", &tls.key))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(setup("TLS versions"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(setup("certificate and key do not fit"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

pub fn server_name(host: &str) -> Result<pki_types::ServerName<'static>, TlsError> {
    pki_types::ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName {
        host: host.to_string(),
    })
}

/// The usual chain verification, plus: a server certificate that is itself in the CA file is
/// accepted. `openssl req -x509` makes self-signed certificates marked CA:TRUE, which webpki
/// refuses as a server's own certificate; curl and Go accept them from a CA file, and so do we.
/// The handshake signature is still checked against that certificate's key, and the
/// certificate must name the host dialled, as curl and Go require too.
#[derive(Debug)]
struct Pinning {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<pki_types::CertificateDer<'static>>,
}

impl rustls::client::danger::ServerCertVerifier for Pinning {
    fn verify_server_cert(
        &self,
        end_entity: &pki_types::CertificateDer<'_>,
        intermediates: &[pki_types::CertificateDer<'_>],
        server_name: &pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&cert, server_name)?;
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Accepts every certificate: `--insecure` only.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &pki_types::CertificateDer<'_>,
        _intermediates: &[pki_types::CertificateDer<'_>],
        _server_name: &pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A plain or TLS stream, so links and the HTTP front have one type either way.
pub enum MaybeTls<S> {
    Plain(S),
    Client(Box<futures_rustls::client::TlsStream<S>>),
    Server(Box<futures_rustls::server::TlsStream<S>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            MaybeTls::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            MaybeTls::Client($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
            MaybeTls::Server($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl<S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin> futures_io::AsyncRead
    for MaybeTls<S>
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl<S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin> futures_io::AsyncWrite
    for MaybeTls<S>
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_close(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes128_gcm_leads_and_no_suite_is_dropped() {
        let ours = provider().cipher_suites.clone();
        let ring = rustls::crypto::ring::default_provider().cipher_suites;
        assert_eq!(
            ours[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        // TLS 1.3 suites still come before TLS 1.2 ones, and the 1.2 list leads with AES-128.
        let first12 = ours
            .iter()
            .position(|s| !is_tls13(s))
            .expect("TLS 1.2 suites");
        assert!(ours[..first12].iter().all(is_tls13));
        assert!(!ours[first12..].iter().any(is_tls13));
        assert!(is_aes128_gcm(ours[first12].suite()));
        let sorted = |v: &[rustls::SupportedCipherSuite]| {
            let mut v: Vec<u16> = v.iter().map(|s| u16::from(s.suite())).collect();
            v.sort_unstable();
            v
        };
        assert_eq!(sorted(&ours), sorted(&ring));
    }
}
