//! Criterion benches of the LinkSocks wire codec: Data messages of 64 B, 16 KiB and 1 MiB
//! (uncompressed), a compressible 1 MiB payload through gzip, and the Connect / Disconnect
//! control messages. Throughput is in payload bytes (frame bytes for control messages), so
//! criterion reports GB/s next to the time per message.
//!
//! Run: `cargo bench -p linksocks-benches --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use linksocks_benches::noise;
use linksocks_core::ids::ChannelId;
use linksocks_core::wire::{
    decode, encode, encode_data_header, Compression, Connect, Data, DecodeLimits, Message,
    Protocol, DATA_HEADER_LEN,
};

const CHANNEL: ChannelId = ChannelId([
    0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x41, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
]);

/// Compressible text: access-log-like lines with varying numbers.
fn text(len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len + 128);
    let mut i: u64 = 0;
    while v.len() < len {
        v.extend_from_slice(
            format!(
                "10.0.{}.{} - - [25/Nov/2026:10:{:02}:{:02} +0000] \"GET /api/v1/items/{} HTTP/1.1\" 200 {}\n",
                i % 7,
                i % 251,
                (i / 60) % 60,
                i % 60,
                i * 7919 % 100_000,
                i * 31 % 9000
            )
            .as_bytes(),
        );
        i += 1;
    }
    v.truncate(len);
    Bytes::from(v)
}

fn data(payload: Bytes, compression: Compression) -> Message {
    Message::Data(Data {
        protocol: Protocol::Tcp,
        channel: CHANNEL,
        compression,
        payload,
        udp: None,
    })
}

fn frame(msg: &Message) -> Bytes {
    let mut b = BytesMut::new();
    encode(msg, &mut b).expect("encodes");
    b.freeze()
}

fn bench_data(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let mut g = c.benchmark_group("data");
    for (label, len) in [("64B", 64usize), ("16KiB", 16 << 10), ("1MiB", 1 << 20)] {
        let msg = data(noise(len), Compression::None);
        let wire = frame(&msg);
        g.throughput(Throughput::Bytes(len as u64));

        // Full encode: header plus a copy of the payload into the frame buffer.
        let mut buf = BytesMut::with_capacity(wire.len());
        g.bench_function(BenchmarkId::new("encode", label), |b| {
            b.iter(|| {
                buf.clear();
                encode(black_box(&msg), &mut buf).unwrap();
                black_box(buf.len())
            })
        });

        // The zero-copy send path: the payload was read behind 24 bytes of header room, only
        // the header is written.
        let mut room = BytesMut::zeroed(DATA_HEADER_LEN + len);
        g.bench_function(BenchmarkId::new("encode_header_only", label), |b| {
            b.iter(|| {
                encode_data_header(
                    black_box(&mut room[..]),
                    Protocol::Tcp,
                    CHANNEL,
                    Compression::None,
                    len as u32,
                );
                black_box(room[DATA_HEADER_LEN - 1])
            })
        });

        // Decode: the payload is a slice of the frame, not a copy.
        g.bench_function(BenchmarkId::new("decode", label), |b| {
            b.iter(|| decode(black_box(wire.clone()), &limits).unwrap())
        });
    }
    g.finish();
}

fn bench_gzip(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let len = 1usize << 20;
    let msg = data(text(len), Compression::Gzip);
    let wire = frame(&msg);
    eprintln!(
        "gzip: 1 MiB of log text travels as {} bytes ({:.1} %)",
        wire.len(),
        100.0 * wire.len() as f64 / len as f64
    );
    let mut g = c.benchmark_group("data_gzip");
    g.throughput(Throughput::Bytes(len as u64));
    let mut buf = BytesMut::with_capacity(len);
    g.bench_function(BenchmarkId::new("encode", "1MiB"), |b| {
        b.iter(|| {
            buf.clear();
            encode(black_box(&msg), &mut buf).unwrap();
            black_box(buf.len())
        })
    });
    g.bench_function(BenchmarkId::new("decode", "1MiB"), |b| {
        b.iter(|| decode(black_box(wire.clone()), &limits).unwrap())
    });
    g.finish();
}

fn bench_control(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let connect = Message::Connect(Connect {
        protocol: Protocol::Tcp,
        channel: CHANNEL,
        target: Some(("www.example.com".to_owned(), 443)),
    });
    let disconnect = Message::Disconnect {
        channel: CHANNEL,
        error: Some("connection reset by peer".to_owned()),
    };
    let mut g = c.benchmark_group("control");
    for (label, msg) in [("connect", &connect), ("disconnect", &disconnect)] {
        let wire = frame(msg);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        let mut buf = BytesMut::with_capacity(256);
        g.bench_function(BenchmarkId::new("encode", label), |b| {
            b.iter(|| {
                buf.clear();
                encode(black_box(msg), &mut buf).unwrap();
                black_box(buf.len())
            })
        });
        g.bench_function(BenchmarkId::new("decode", label), |b| {
            b.iter(|| decode(black_box(wire.clone()), &limits).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench_data, bench_gzip, bench_control);
criterion_main!(benches);
