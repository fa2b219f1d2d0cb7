//! The disk spool against a model of it: any mix of appends, reads, acknowledgements,
//! reconnects (rewind) and restarts (reopen) delivers every record in order, and nothing
//! acknowledged comes back.

use std::collections::VecDeque;

use gatewatch_agent::uplink::{Fsync, Spool, SpoolConfig, WhenFull};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Read(usize),
    AckRead,
    Rewind,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..300).prop_map(Op::Append),
        3 => (1usize..20).prop_map(Op::Read),
        2 => Just(Op::AckRead),
        1 => Just(Op::Rewind),
        1 => Just(Op::Reopen),
    ]
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn delivers_everything_in_order_at_least_once(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = SpoolConfig { max_bytes: 64 << 20, segment_bytes: 1024, fsync: Fsync::Never, when_full: WhenFull::RejectNew };
        let mut spool = Spool::open(dir.path(), config).expect("open");
        // Not yet acknowledged, oldest first; `read` of them were handed out since the last rewind.
        let mut pending: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut read = 0usize;
        let mut last_read: Option<u64> = None;
        let mut next = 1u64;
        for op in ops {
            match op {
                Op::Append(len) => {
                    let data = payload(next, len);
                    prop_assert_eq!(spool.append(&data).expect("append"), Some(next));
                    pending.push_back((next, data));
                    next += 1;
                }
                Op::Read(n) => {
                    let got = spool.read_batch(n, usize::MAX).expect("read");
                    let expected: Vec<_> = pending.iter().skip(read).take(n).cloned().collect();
                    prop_assert_eq!(got.len(), expected.len());
                    for (g, (seq, data)) in got.iter().zip(&expected) {
                        prop_assert_eq!(g.seq, *seq);
                        prop_assert_eq!(&g.payload, data);
                    }
                    read += got.len();
                    if let Some(g) = got.last() {
                        last_read = Some(g.seq);
                    }
                }
                Op::AckRead => {
                    if let Some(seq) = last_read {
                        spool.ack(seq).expect("ack");
                        while pending.front().is_some_and(|(s, _)| *s <= seq) {
                            pending.pop_front();
                            read -= 1;
                        }
                    }
                }
                Op::Rewind => {
                    spool.rewind().expect("rewind");
                    read = 0;
                    last_read = None;
                }
                Op::Reopen => {
                    spool.sync().expect("sync");
                    drop(spool);
                    spool = Spool::open(dir.path(), config).expect("reopen");
                    read = 0;
                    last_read = None;
                }
            }
            prop_assert_eq!(spool.stats().pending_records, pending.len() as u64);
        }
        // Drain: exactly the pending records, then acknowledged files are gone.
        spool.rewind().expect("rewind");
        let rest = spool.read_batch(usize::MAX, usize::MAX).expect("read");
        prop_assert_eq!(rest.iter().map(|r| r.seq).collect::<Vec<_>>(), pending.iter().map(|p| p.0).collect::<Vec<_>>());
        if let Some(last) = rest.last() {
            spool.ack(last.seq).expect("ack");
        }
        let segments = std::fs::read_dir(dir.path()).expect("dir").filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "seg")).count();
        prop_assert_eq!(segments, 0);
    }
}
