use super::*;
use std::time::Duration;

use stator_operators::Moments;

fn spec(size: u64, every: u64, lateness: u64) -> WindowSpec {
    WindowSpec {
        name: "w".into(),
        key: vec!["machine".into()],
        key_index: vec![0],
        filter: None,
        size: Duration::from_secs(size),
        every: Duration::from_secs(every),
        allowed_lateness: Duration::from_secs(lateness),
        idle_timeout: Duration::from_secs(30),
        kind: crate::config::WindowKind::Scalar(vec![]),
        publish: None,
    }
}

type Op = WindowOperator<Moments>;

fn add(op: &mut Op, key: &str, t_s: f64, v: f64, seq: u64, now: Instant) -> Result<u32, Late> {
    let t = (t_s * 1000.0) as i64;
    op.add(key, &[key], (t, t + 1), seq, now, false, |_, _, m| m.push(v))
}

fn rms(w: &Closed<Moments>) -> f64 {
    w.pane.get(stator_operators::Aggregate::Rms).unwrap()
}

#[test]
fn tumbling_windows_close_when_the_watermark_passes_their_end() {
    let now = Instant::now();
    let mut op = Op::new(0, &spec(10, 10, 5));
    for (i, t) in [1.0, 3.0, 9.5, 12.0].iter().enumerate() {
        add(&mut op, "m1", *t, 2.0, i as u64 + 1, now).unwrap();
    }
    let mut out = Vec::new();
    op.advance(now, false, &mut out);
    assert!(out.is_empty(), "watermark 7s has not passed 10s");
    add(&mut op, "m1", 15.0, 2.0, 5, now).unwrap();
    op.advance(now, false, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].start_ms, out[0].end_ms), (0, 10_000));
    assert_eq!(out[0].seqs, vec![1, 2, 3]);
    assert_eq!(out[0].pane.count(), 3);
    assert_eq!(rms(&out[0]), 2.0);
}

#[test]
fn out_of_order_within_lateness_is_counted_and_later_is_refused() {
    let now = Instant::now();
    let mut op = Op::new(0, &spec(10, 10, 5));
    add(&mut op, "m1", 13.0, 1.0, 1, now).unwrap();
    add(&mut op, "m1", 8.0, 3.0, 2, now).unwrap(); // watermark 8s < 10s: still open
    let mut out = Vec::new();
    add(&mut op, "m1", 16.0, 1.0, 3, now).unwrap();
    op.advance(now, false, &mut out);
    assert_eq!(out[0].seqs, vec![2]);
    assert_eq!(rms(&out[0]), 3.0);
    let late = add(&mut op, "m1", 9.0, 1.0, 4, now).unwrap_err();
    assert_eq!(late.window_end_ms, 10_000);
}

#[test]
fn hopping_windows_take_each_reading_size_over_every_times() {
    let now = Instant::now();
    let mut op = Op::new(0, &spec(30, 10, 0));
    assert_eq!(add(&mut op, "m1", 25.0, 1.0, 1, now), Ok(3));
    let mut out = Vec::new();
    add(&mut op, "m1", 100.0, 1.0, 2, now).unwrap();
    op.advance(now, false, &mut out);
    let spans: Vec<(i64, i64)> = out.iter().map(|w| (w.start_ms, w.end_ms)).collect();
    assert_eq!(spans, vec![(0, 30_000), (10_000, 40_000), (20_000, 50_000)]);
}

#[test]
fn a_span_is_split_over_the_windows_it_overlaps() {
    let now = Instant::now();
    let mut op = WindowOperator::<Vec<(i64, i64)>>::new(0, &spec(1, 1, 0));
    let n = op.add("m1", &["m1"], (500, 2_300), 7, now, false, |s, e, p| p.push((s.max(500), e.min(2_300)))).unwrap();
    assert_eq!(n, 3);
    let mut out = Vec::new();
    op.flush(&mut out);
    let parts: Vec<(i64, i64)> = out.iter().flat_map(|w| w.pane.clone()).collect();
    assert_eq!(parts, vec![(500, 1000), (1000, 2000), (2000, 2300)]);
    assert!(out.iter().all(|w| w.seqs == vec![7]));
}

#[test]
fn an_idle_key_gets_its_windows_closed() {
    let t0 = Instant::now();
    let mut op = Op::new(0, &spec(10, 10, 0));
    add(&mut op, "quiet", 1.0, 1.0, 1, t0).unwrap();
    let mut out = Vec::new();
    op.advance(t0 + Duration::from_secs(29), false, &mut out);
    assert!(out.is_empty());
    op.advance(t0 + Duration::from_secs(31), false, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].key, vec!["quiet".to_owned()]);
}

/// `advance` looks at every key only once one may have gone idle; each key still closes at
/// its own idle time, whatever the others do, and a key that keeps receiving does not close.
#[test]
fn each_idle_key_closes_at_its_own_idle_time() {
    let (t0, s) = (Instant::now(), Duration::from_secs);
    let mut op = Op::new(0, &spec(10, 10, 0)); // idle after 30 s
    let keys = |out: &[Closed<Moments>]| out.iter().map(|w| w.key[0].clone()).collect::<Vec<_>>();
    let mut out = Vec::new();
    add(&mut op, "a", 1.0, 1.0, 1, t0).unwrap();
    add(&mut op, "c", 1.0, 1.0, 2, t0).unwrap();
    op.advance(t0, false, &mut out);
    add(&mut op, "b", 2.0, 1.0, 3, t0 + s(10)).unwrap();
    add(&mut op, "c", 3.0, 1.0, 4, t0 + s(20)).unwrap();
    op.advance(t0 + s(29), false, &mut out);
    assert!(out.is_empty());
    op.advance(t0 + s(30), false, &mut out);
    assert_eq!(keys(&out), ["a"]);
    op.advance(t0 + s(39), false, &mut out);
    assert_eq!(keys(&out), ["a"]);
    op.advance(t0 + s(40), false, &mut out);
    assert_eq!(keys(&out), ["a", "b"]);
    op.advance(t0 + s(49), false, &mut out);
    assert_eq!(out.len(), 2, "c received at 20 s");
    op.advance(t0 + s(50), false, &mut out);
    assert_eq!(keys(&out), ["a", "b", "c"]);
    assert_eq!(out[2].seqs, vec![2, 4]);
}

#[test]
fn holding_the_watermark_keeps_windows_open_and_accepts_old_readings() {
    let now = Instant::now();
    let mut op = Op::new(0, &spec(10, 10, 0));
    op.add("m1", &["m1"], (100_000, 100_001), 10, now, true, |_, _, m| m.push(1.0)).unwrap();
    op.add("m1", &["m1"], (1_000, 1_001), 1, now, true, |_, _, m| m.push(1.0)).unwrap();
    let mut out = Vec::new();
    op.advance(now + Duration::from_secs(60), true, &mut out);
    assert!(out.is_empty());
    op.advance(now, false, &mut out);
    assert_eq!(out.len(), 1, "released: the old window closes, the new one stays open");
}

#[test]
fn each_key_has_its_own_watermark() {
    let now = Instant::now();
    let mut op = Op::new(0, &spec(10, 10, 0));
    add(&mut op, "live", 100.0, 1.0, 1, now).unwrap();
    // A site replaying buffered data from long ago is not late: its own watermark is behind.
    assert_eq!(add(&mut op, "replayed", 1.0, 1.0, 2, now), Ok(1));
    add(&mut op, "replayed", 12.0, 1.0, 3, now).unwrap();
    let mut out = Vec::new();
    op.advance(now, false, &mut out);
    let closed: Vec<(&str, i64)> = out.iter().map(|w| (w.key[0].as_str(), w.end_ms)).collect();
    assert_eq!(closed, vec![("replayed", 10_000)]);
    assert!(add(&mut op, "replayed", 5.0, 1.0, 4, now).is_err());
}
