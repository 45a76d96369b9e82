//! A username/password pair: what our SOCKS5 listener requires of applications (RFC 1929), or
//! what we present to an upstream proxy.

use std::fmt;
use std::hint::black_box;

/// Username and password as raw bytes (RFC 1929 does not define an encoding).
///
/// `Debug` shows the username but never the password, so the value can sit in logged
/// configuration structs. Equality goes through [`Credentials::matches`] and so is
/// constant-time as well.
#[derive(Clone)]
pub struct Credentials {
    username: Vec<u8>,
    password: Vec<u8>,
}

impl Credentials {
    /// Credentials from raw bytes (RFC 1929 does not require UTF-8); each must be at most 255 bytes
    /// to be sent.
    pub fn new(username: impl Into<Vec<u8>>, password: impl Into<Vec<u8>>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The username bytes.
    pub fn username(&self) -> &[u8] {
        &self.username
    }

    /// The password bytes.
    pub fn password(&self) -> &[u8] {
        &self.password
    }

    /// Whether `username` and `password` are exactly these credentials.
    ///
    /// Constant-time in the sense that matters to a remote guesser: the work depends only on
    /// the lengths of the *offered* values (which the guesser already knows), never on where
    /// the first differing byte is, on the stored values' content, or on whether the username
    /// was right (both fields are always compared in full).
    pub fn matches(&self, username: &[u8], password: &[u8]) -> bool {
        let user_ok = ct_eq(&self.username, username);
        let pass_ok = ct_eq(&self.password, password);
        // `&` rather than `&&`: a right username must not buy a different timing.
        black_box(user_ok) & black_box(pass_ok)
    }
}

/// Compare `offered` against `secret` without a data-dependent early exit.
///
/// Every offered byte is compared with the secret byte at the same index modulo the secret's
/// length, so a length mismatch costs exactly as much as a content mismatch; the length
/// difference itself is folded into the result without a branch.
pub fn ct_eq(secret: &[u8], offered: &[u8]) -> bool {
    let n = secret.len();
    let mut diff: u8 = 0;
    for (i, &o) in offered.iter().enumerate() {
        // `n == 0` depends only on configuration, not on anything the peer controls.
        let s = if n == 0 { 0 } else { secret[i % n] };
        diff = black_box(diff | (s ^ o));
    }
    let len_diff = n ^ offered.len();
    // 1 when the lengths differ, 0 when equal, computed without branching on the values.
    let len_ne = ((len_diff | len_diff.wrapping_neg()) >> (usize::BITS - 1)) as u8;
    black_box(diff | len_ne) == 0
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.username, &other.password)
    }
}

impl Eq for Credentials {}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &String::from_utf8_lossy(&self.username))
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_pair() {
        let c = Credentials::new("user", "pass");
        assert!(c.matches(b"user", b"pass"));
        assert!(!c.matches(b"user", b"pasS"));
        assert!(!c.matches(b"User", b"pass"));
        assert!(!c.matches(b"user", b"pas"));
        assert!(!c.matches(b"user", b"passs"));
        assert!(
            !c.matches(b"user", b"passpass"),
            "a repetition of the secret is not the secret"
        );
        assert!(!c.matches(b"useruser", b"pass"));
        assert!(!c.matches(b"", b""));
        assert!(!c.matches(b"user", b""));
    }

    #[test]
    fn empty_values_compare_correctly() {
        let c = Credentials::new("", "");
        assert!(c.matches(b"", b""));
        assert!(!c.matches(b"\0", b""));
        assert!(!c.matches(b"", b"\0"));
        let c = Credentials::new("u", "");
        assert!(c.matches(b"u", b""));
        assert!(!c.matches(b"u", b"\0"));
    }

    #[test]
    fn lengths_far_apart_do_not_wrap_into_a_match() {
        let c = Credentials::new(vec![7u8; 300], vec![0u8; 1]);
        assert!(c.matches(&[7u8; 300], &[0]));
        assert!(!c.matches(&[7u8; 44], &[0]), "300 ^ 44 has low bits set");
        assert!(!c.matches(&[7u8; 300 + 256], &[0]));
        assert!(!c.matches(&[7u8; 300], &[0, 0]));
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials::new("alice", "hunter2-secret");
        let s = format!("{c:?}");
        assert!(s.contains("alice"));
        assert!(!s.contains("hunter2"), "{s}");
        let s = format!("{c:#?}");
        assert!(!s.contains("hunter2"), "{s}");
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(
            Credentials::new("a", "b"),
            Credentials::new(*b"a", vec![b'b'])
        );
        assert_ne!(Credentials::new("a", "b"), Credentials::new("a", "c"));
    }
}
