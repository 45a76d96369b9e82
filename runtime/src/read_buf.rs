//! Where a local socket's reads land: chunks that many reads share, reused once every read
//! cut from them has been let go.
//!
//! A read is handed to the machine as a [`BytesMut`] split off a chunk, and the machine keeps
//! a slice of it until the peer acknowledges having written it out (the replay log of a
//! channel that can resume). With a buffer per read, each read would allocate afresh while
//! the earlier ones are still held; on Linux with transparent huge pages and an allocator
//! that returns freed memory at once, that is a 2 MiB page fault and zeroing every few reads
//! (measured: about 15% more CPU per GiB in a one-stream transfer). Chunks fix that: a chunk
//! whose reads are all released is reclaimed in place, and small reads pack densely, so a
//! chatty channel's kept bytes pin a chunk or two rather than a buffer each.

use bytes::BytesMut;

/// Smallest chunk: small reads (an interactive session) share one.
const CHUNK_MIN: usize = 16 << 10;
/// A chunk holds at least this many reads of the size asked.
const READS_PER_CHUNK: usize = 4;
/// The most a quiet socket keeps: a chunk of small reads.
const IDLE_MAX: usize = 4 * CHUNK_MIN;
/// Chunks kept for reuse. A busy channel has its flow window in flight (8 MiB by default,
/// in chunks of about 1 MiB for full-size reads); beyond this, chunks are allocated afresh
/// and freed when their reads are.
const RETIRED_MAX: usize = 16;

/// A chunk given up for new reads, with the capacity it had when allocated and how much of
/// it was ever written.
struct Retired {
    buf: BytesMut,
    capacity: usize,
    written: usize,
}

/// One reader's chunks. See the [module documentation](self).
pub(crate) struct ReadBuffers {
    /// Reads are split off the front; the spare capacity is where the next one goes.
    cur: BytesMut,
    /// Earlier chunks, oldest first: reusable once every read cut from them is dropped.
    retired: Vec<Retired>,
    /// The capacity `cur` was allocated with.
    cur_capacity: usize,
    /// How far into `cur`'s allocation bytes were ever written (zeroed or read into).
    written: usize,
}

impl ReadBuffers {
    pub(crate) fn new() -> Self {
        ReadBuffers {
            cur: BytesMut::new(),
            retired: Vec::new(),
            cur_capacity: 0,
            written: 0,
        }
    }

    /// `len` bytes to read into, holding whatever an earlier read of the chunk left there.
    /// Follow with [`ReadBuffers::take`].
    pub(crate) fn prepare(&mut self, len: usize) -> &mut [u8] {
        debug_assert!(self.cur.is_empty());
        if self.cur.capacity() < len {
            self.switch(len);
        }
        // Zeroing the read's room every time was a tenth of a bulk transfer's CPU (perf,
        // 256 KiB reads), for bytes the read overwrites: each byte of a chunk is zeroed once,
        // the first time a read's room reaches it.
        let offset = self.cur_capacity - self.cur.capacity();
        let ready = self.written.saturating_sub(offset).min(len);
        // SAFETY: `cur` starts `offset` bytes into its chunk's allocation (reads are split
        // off the front; reclaiming keeps the same allocation), and every byte of the
        // allocation below `written` was written before; `ready` is within both.
        unsafe { self.cur.set_len(ready) };
        if ready < len {
            self.cur.resize(len, 0);
            self.written = offset + len;
        }
        &mut self.cur[..]
    }

    /// The first `n` bytes of what [`ReadBuffers::prepare`] gave, as a buffer of their own;
    /// the rest of the chunk stays for the next read.
    pub(crate) fn take(&mut self, n: usize) -> BytesMut {
        self.cur.truncate(n);
        self.cur.split()
    }

    /// Let go of every chunk (the reader goes idle): reads still held keep theirs alive, and
    /// the next read starts a small chunk.
    pub(crate) fn release_idle(&mut self) {
        self.retired.clear();
        self.cur = BytesMut::new();
        self.cur_capacity = 0;
        self.written = 0;
    }

    /// Whether more is kept than a socket of small reads needs: worth letting go when the
    /// socket falls quiet.
    pub(crate) fn worth_releasing(&self) -> bool {
        !self.retired.is_empty() || self.cur_capacity > IDLE_MAX
    }

    /// Start a chunk with room for `len`: a retired one whose reads are all gone, or a new one.
    fn switch(&mut self, len: usize) {
        let capacity = (len * READS_PER_CHUNK).max(CHUNK_MIN);
        let old = std::mem::take(&mut self.cur);
        // A chunk too small for reads of this size would never be picked again.
        if self.cur_capacity >= len {
            self.retired.push(Retired {
                buf: old,
                capacity: self.cur_capacity,
                written: self.written,
            });
        }
        let reuse = self
            .retired
            .iter_mut()
            .position(|r| r.capacity >= len && r.buf.try_reclaim(r.capacity));
        if let Some(i) = reuse {
            let r = self.retired.remove(i);
            self.cur = r.buf;
            self.cur_capacity = r.capacity;
            self.written = r.written;
        } else {
            self.cur = BytesMut::with_capacity(capacity);
            self.cur_capacity = self.cur.capacity();
            self.written = 0;
        }
        if self.retired.len() > RETIRED_MAX {
            self.retired.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(b: &mut ReadBuffers, len: usize, n: usize, fill: u8) -> BytesMut {
        let buf = b.prepare(len);
        assert_eq!(buf.len(), len);
        buf[..n].fill(fill);
        b.take(n)
    }

    #[test]
    fn reads_share_a_chunk_and_keep_their_bytes() {
        let mut b = ReadBuffers::new();
        let x = read(&mut b, 4096, 10, 1);
        let y = read(&mut b, 4096, 20, 2);
        assert_eq!(&x[..], &[1; 10]);
        assert_eq!(&y[..], &[2; 20]);
        // Adjacent in one allocation.
        assert_eq!(x.as_ptr() as usize + 10, y.as_ptr() as usize);
    }

    #[test]
    fn a_released_chunk_is_reused_in_place() {
        let mut b = ReadBuffers::new();
        let first = read(&mut b, 1 << 20, 1 << 20, 7);
        let base = first.as_ptr();
        let held: Vec<BytesMut> = (0..3).map(|_| read(&mut b, 1 << 20, 1 << 20, 8)).collect();
        drop(first);
        drop(held);
        // The next read needs a new chunk: the first one, all its reads gone, comes back.
        let again = read(&mut b, 1 << 20, 100, 9);
        assert_eq!(again.as_ptr(), base);
        assert_eq!(&again[..], &[9; 100]);
    }

    #[test]
    fn a_chunk_still_read_from_is_not_reused() {
        let mut b = ReadBuffers::new();
        let reads: Vec<BytesMut> = (0..4).map(|i| read(&mut b, 1 << 20, 1 << 20, i)).collect();
        let fresh = read(&mut b, 1 << 20, 5, 42);
        for (i, r) in reads.iter().enumerate() {
            assert!(r.iter().all(|&x| x == i as u8), "read {i} overwritten");
        }
        assert_eq!(&fresh[..], &[42; 5]);
    }

    #[test]
    fn idle_release_keeps_at_most_the_current_chunk() {
        let mut b = ReadBuffers::new();
        // Reads still held when their chunk fills: the next chunk is a new one.
        let held: Vec<BytesMut> = (0..8).map(|_| read(&mut b, 1 << 20, 1 << 20, 0)).collect();
        drop(held);
        assert!(b.worth_releasing());
        b.release_idle();
        assert!(!b.worth_releasing());
        assert_eq!(b.cur.capacity(), 0, "the current chunk goes too");
        assert_eq!(&read(&mut b, 4096, 3, 5)[..], &[5; 3]);
    }

    #[test]
    fn retired_chunks_are_bounded() {
        let mut b = ReadBuffers::new();
        let held: Vec<BytesMut> = (0..80).map(|_| read(&mut b, 1 << 20, 1 << 20, 1)).collect();
        assert!(b.retired.len() <= RETIRED_MAX);
        drop(held);
    }
}
