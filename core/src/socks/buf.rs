//! A fixed inline buffer that collects one handshake message whose total length becomes
//! known only as its first bytes arrive.
//!
//! SOCKS5 messages announce their own lengths with single bytes, so every message has a small
//! upper bound; collecting into an inline array means a hostile length byte never makes us
//! allocate anything, and copying only up to the currently known length means we never read
//! past the end of the message (the bytes after it belong to whoever comes next).

pub(crate) struct MsgBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> MsgBuf<N> {
    pub(crate) const fn new() -> Self {
        MsgBuf {
            buf: [0; N],
            len: 0,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Collect one message from `input[*pos..]`, advancing `*pos` over what was taken.
    ///
    /// `need` looks at the bytes collected so far and says how long the whole message is as far
    /// as they tell (a lower bound that grows as length bytes arrive), or rejects them. Returns
    /// `Ok(true)` once the message is complete, `Ok(false)` when `input` ran out first.
    pub(crate) fn collect<E>(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        need: impl Fn(&[u8]) -> Result<usize, E>,
    ) -> Result<bool, E> {
        loop {
            // A message can never be longer than the buffer by construction of the callers'
            // length rules; the clamp keeps a wrong rule from turning into a panic.
            let want = need(self.bytes())?.min(N);
            if self.len >= want {
                return Ok(true);
            }
            let rest = input.get(*pos..).unwrap_or(&[]);
            if rest.is_empty() {
                return Ok(false);
            }
            let take = (want - self.len).min(rest.len());
            self.buf[self.len..self.len + take].copy_from_slice(&rest[..take]);
            self.len += take;
            *pos += take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_then_len(b: &[u8]) -> Result<usize, ()> {
        if b.len() < 2 {
            Ok(2)
        } else {
            Ok(2 + b[1] as usize)
        }
    }

    #[test]
    fn stops_at_the_end_of_the_message() {
        let mut m = MsgBuf::<16>::new();
        let mut pos = 0;
        assert_eq!(
            m.collect(&[9, 3, 1, 2, 3, 7, 7], &mut pos, two_then_len),
            Ok(true)
        );
        assert_eq!(pos, 5);
        assert_eq!(m.bytes(), &[9, 3, 1, 2, 3]);
    }

    #[test]
    fn resumes_across_calls() {
        let mut m = MsgBuf::<16>::new();
        for (i, b) in [9u8, 2, 5].iter().enumerate() {
            let mut pos = 0;
            assert_eq!(
                m.collect(&[*b], &mut pos, two_then_len),
                Ok(false),
                "byte {i}"
            );
            assert_eq!(pos, 1);
        }
        let mut pos = 0;
        assert_eq!(m.collect(&[6, 0xAA], &mut pos, two_then_len), Ok(true));
        assert_eq!(pos, 1);
        assert_eq!(m.bytes(), &[9, 2, 5, 6]);
    }

    #[test]
    fn an_oversized_rule_is_clamped_not_a_panic() {
        let mut m = MsgBuf::<4>::new();
        let mut pos = 0;
        assert_eq!(
            m.collect(&[0; 10], &mut pos, |_| Ok::<_, ()>(100)),
            Ok(true)
        );
        assert_eq!(pos, 4);
    }
}
