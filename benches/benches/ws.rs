//! Criterion benches of the WebSocket codec (`linksocks_core::ws`): frame header parse and
//! encode, decoding binary frames of 64 B, 16 KiB and 1 MiB (masked, as a server receives
//! them, and unmasked, as a client does), framing messages (a server's, header only; a
//! client's, masked in place or copied and masked), and the masking XOR alone. Throughput is
//! in payload bytes (header bytes for the header benches), so criterion reports GB/s next to
//! the time per frame.
//!
//! Run: `cargo bench -p linksocks-benches --bench ws -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use linksocks_benches::noise;
use linksocks_core::ws::{
    apply_mask, Decoded, Decoder, FrameHeader, Framer, Incoming, Opcode, Outgoing, Side,
};

const SIZES: [(&str, usize); 3] = [("64B", 64), ("16KiB", 16 << 10), ("1MiB", 1 << 20)];
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One final binary frame carrying `payload`, masked with `mask` if given.
fn frame(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut b = BytesMut::new();
    FrameHeader {
        fin: true,
        opcode: Opcode::Binary,
        mask,
        len: payload.len() as u64,
    }
    .encode(&mut b);
    let mut p = payload.to_vec();
    if let Some(m) = mask {
        apply_mask(&mut p, m);
    }
    b.extend_from_slice(&p);
    b.to_vec()
}

fn bench_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("header");
    // The three length forms; masked as a server receives them, plain as a client does.
    for (label, len, mask) in [
        ("7bit_plain", 64u64, None),
        ("16bit_masked", 16 << 10, Some(MASK)),
        ("64bit_masked", 1 << 20, Some(MASK)),
    ] {
        let h = FrameHeader {
            fin: true,
            opcode: Opcode::Binary,
            mask,
            len,
        };
        let mut wire = BytesMut::new();
        h.encode(&mut wire);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(BenchmarkId::new("parse", label), |b| {
            b.iter(|| FrameHeader::parse(black_box(&wire[..])).unwrap())
        });
        let mut out = BytesMut::with_capacity(64);
        g.bench_function(BenchmarkId::new("encode", label), |b| {
            b.iter(|| {
                out.clear();
                black_box(&h).encode(&mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (label, len) in SIZES {
        let payload = noise(len);
        g.throughput(Throughput::Bytes(len as u64));
        for (side, kind, mask) in [
            (Side::Server, "masked", Some(MASK)),
            (Side::Client, "unmasked", None),
        ] {
            let wire = frame(&payload, mask);
            let mut d = Decoder::new(side, 32 << 20);
            // Each decode consumes its buffer (and unmasks it in place), so each gets a fresh
            // copy of the frame, made outside the measured time.
            let size = if len >= 1 << 20 {
                BatchSize::LargeInput
            } else {
                BatchSize::SmallInput
            };
            g.bench_function(BenchmarkId::new(kind, label), |b| {
                b.iter_batched_ref(
                    || BytesMut::from(&wire[..]),
                    |buf| match d.decode(buf) {
                        Ok(Decoded::Message(Incoming::Binary(m))) => m,
                        other => panic!("{other:?}"),
                    },
                    size,
                )
            });
        }
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (label, len) in SIZES {
        g.throughput(Throughput::Bytes(len as u64));

        // A server's frame: a header, the payload passed through untouched.
        let payload = noise(len);
        let mut server = Framer::new(Side::Server, 1);
        g.bench_function(BenchmarkId::new("server_header_only", label), |b| {
            b.iter(|| server.encode(Outgoing::Binary(black_box(payload.clone()))))
        });

        // A client's frame from a payload it holds alone: masked in place. The masked payload
        // comes back unique, so it is fed in again (masking twice is as costly as once).
        let mut client = Framer::new(Side::Client, 1);
        let mut held = Some(noise(len));
        g.bench_function(BenchmarkId::new("client_mask_in_place", label), |b| {
            b.iter(|| {
                let (h, p) = client.encode(Outgoing::Binary(held.take().expect("fed back")));
                held = Some(p);
                h
            })
        });

        // A client's frame from a payload someone else still holds: copied, then masked.
        let shared = noise(len);
        g.bench_function(BenchmarkId::new("client_copy_and_mask", label), |b| {
            b.iter(|| client.encode(Outgoing::Binary(black_box(shared.clone()))))
        });
    }
    g.finish();
}

fn bench_mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply_mask");
    for (label, len) in SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        let mut buf = noise(len).to_vec();
        g.bench_function(label, |b| {
            b.iter(|| apply_mask(black_box(&mut buf[..]), black_box(MASK)))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_header,
    bench_decode,
    bench_encode,
    bench_mask
);
criterion_main!(benches);
