//! Images from a catalog, prepared on several threads and handed over in catalog order.
//!
//! ```text
//! reader ──(window)──▶ workers (N) ──▶ reorder ──▶ consume (caller's thread, e.g. inference)
//!    ▲                                              │
//!    └─────────────────── tokens ◀──────────────────┘
//! ```
//!
//! The reader walks the catalog (reading Parquet row groups itself; files and tar members are
//! read by the workers), the workers prepare images as they come — a slow image holds up only
//! its own place, not a batch — and the caller consumes them in order. The reader is at most
//! `window` images ahead of the consumer: each image it sends costs a token the consumer gives
//! back once it has consumed that image, so memory stays bounded whatever the decode times.
//!
//! Nothing can hang: every blocking call waits on a channel whose other end is dropped when
//! its owner stops. When the consumer fails (a disk full, an output directory removed), it drops
//! its receiver and its tokens; the reader's next wait for a token returns, it stops and drops
//! the work channel, and the workers finish the image in hand and stop.

use std::collections::BTreeMap;

use crossbeam_channel::{bounded, unbounded};
use image_input::{Catalog, SourceImage};

use crate::error::{ExtractError, Result};

/// Runs `prepare` over every image of `catalog` on `workers` threads and calls `consume` with
/// the results in catalog order; stops at the first error of `consume` or of the input.
pub fn prepare_in_order<P: Send>(
    catalog: &Catalog,
    workers: usize,
    window: usize,
    prepare: &(dyn Fn(SourceImage) -> P + Sync),
    consume: &mut dyn FnMut(P) -> Result<()>,
) -> Result<()> {
    let window = window.max(1);
    let (work_tx, work_rx) = bounded::<(u64, SourceImage)>(window);
    let (done_tx, done_rx) = unbounded::<(u64, P)>();
    let (token_tx, token_rx) = bounded::<()>(window);
    for _ in 0..window {
        token_tx.send(()).expect("the token channel has room for the window");
    }
    std::thread::scope(|scope| -> Result<()> {
        let reader = scope.spawn(move || {
            let mut seq = 0u64;
            let result = catalog.stream(|image| {
                // a token per image in flight; none left and no consumer: stop
                if token_rx.recv().is_err() {
                    return false;
                }
                let sent = work_tx.send((seq, image)).is_ok();
                seq += 1;
                sent
            });
            drop(work_tx);
            result.map(|()| seq)
        });
        for _ in 0..workers.max(1) {
            let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
            scope.spawn(move || {
                for (seq, image) in work_rx.iter() {
                    if done_tx.send((seq, prepare(image))).is_err() {
                        break;
                    }
                }
            });
        }
        drop((work_rx, done_tx));
        let consumed = consume_in_order(done_rx, token_tx, consume);
        let read = reader.join().map_err(|_| ExtractError::Usage("the input reader panicked".into()))?;
        let consumed = consumed?;
        let read = read.map_err(ExtractError::Input)?;
        if consumed != read {
            return Err(ExtractError::Usage(format!(
                "{read} images were read but {consumed} prepared: a preparing thread stopped"
            )));
        }
        Ok(())
    })
}

/// Consumes results in sequence order; owns the receiver and the tokens so that returning (on
/// success or error) releases every thread waiting on them. Returns how many were consumed.
fn consume_in_order<P>(
    done: crossbeam_channel::Receiver<(u64, P)>,
    tokens: crossbeam_channel::Sender<()>,
    consume: &mut dyn FnMut(P) -> Result<()>,
) -> Result<u64> {
    let mut pending: BTreeMap<u64, P> = BTreeMap::new();
    let mut next = 0u64;
    for (seq, item) in done.iter() {
        pending.insert(seq, item);
        while let Some(item) = pending.remove(&next) {
            consume(item)?;
            next += 1;
            // the reader may have finished: a token nobody takes is fine
            let _ = tokens.try_send(());
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use feature_cache::{Shard, Silent};
    use image_input::InputOptions;

    use super::*;

    fn catalog(n: usize) -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            std::fs::write(dir.path().join(format!("{i:04}.bin")), vec![i as u8; 1 + i % 7]).unwrap();
        }
        let c = Catalog::open(dir.path().to_str().unwrap(), &InputOptions::default(), Shard::ALL, &Silent)
            .unwrap();
        (dir, c)
    }

    #[test]
    fn results_arrive_in_catalog_order_whatever_the_preparation_times() {
        let (_d, c) = catalog(200);
        let prepare = |mut img: SourceImage| {
            let bytes = img.take_bytes().unwrap();
            // later images are faster: completion order differs from catalog order
            std::thread::sleep(Duration::from_micros(((200 - bytes.len() * 20) % 300) as u64));
            img.id
        };
        let mut got = Vec::new();
        prepare_in_order(&c, 4, 16, &prepare, &mut |id| {
            got.push(id);
            Ok(())
        })
        .unwrap();
        let expected: Vec<String> = (0..200).map(|i| format!("{i:04}.bin")).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_failing_consumer_stops_everything_at_once() {
        let (_d, c) = catalog(500);
        let start = Instant::now();
        let mut seen = 0;
        let err = prepare_in_order(&c, 3, 8, &|img: SourceImage| img.id, &mut |_| {
            seen += 1;
            if seen == 10 {
                return Err(ExtractError::Usage("disk full".into()));
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert!(start.elapsed() < Duration::from_secs(10), "stopped in {:?}", start.elapsed());
    }

    #[test]
    fn the_reader_stays_within_the_window() {
        let (_d, c) = catalog(100);
        let prepared = std::sync::atomic::AtomicUsize::new(0);
        let mut consumed = 0usize;
        prepare_in_order(
            &c,
            2,
            5,
            &|img: SourceImage| {
                prepared.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                img.id
            },
            &mut |_| {
                consumed += 1;
                let ahead = prepared.load(std::sync::atomic::Ordering::SeqCst) - consumed;
                assert!(ahead <= 5, "{ahead} images prepared ahead of the consumer");
                std::thread::sleep(Duration::from_micros(200));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(consumed, 100);
    }
}
