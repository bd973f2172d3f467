//! The connector on a virtual clock: no sockets, no sleeps.

use super::*;

const KEEP: Duration = Duration::from_secs(30);

fn cfg() -> ConnectorConfig {
    ConnectorConfig {
        keepalive: KEEP,
        close_timeout: Duration::from_secs(10),
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn actions(c: &mut Connector) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

#[test]
fn backoff_matches_reference() {
    assert_eq!(reconnect_delay(1, 0.0), secs(1.5));
    assert_eq!(reconnect_delay(2, 0.5), secs(2.25 + 0.5));
    assert_eq!(reconnect_delay(11, 0.0), secs(60.0));
    assert_eq!(reconnect_delay(1000, 0.0), secs(60.0));
}

#[test]
fn first_failure_fails_the_session() {
    let t0 = Instant::now();
    let mut c = Connector::new(cfg());
    assert_eq!(actions(&mut c), vec![Action::Connect]);
    assert_eq!(c.connection_failed(t0, 0.3), Ok(true));
    assert_eq!(c.state(), State::Stopped);
    assert_eq!(c.poll_timeout(), None);
}

/// Reconnect backoff steps: each failed retry waits 1.5× longer (plus jitter below one
/// second), capped at 60 s; a successful connection resets the count.
#[test]
fn reconnect_backoff_steps_and_reset() {
    let t0 = Instant::now();
    let mut c = Connector::new(cfg());
    actions(&mut c);
    c.connection_made(t0).unwrap();
    let mut now = t0 + secs(5.0);
    c.connection_lost(now, 0.25).unwrap();
    let mut expected = Vec::new();
    let mut seen = Vec::new();
    for n in 1..=14u32 {
        let due = c.poll_timeout().expect("a retry is scheduled");
        seen.push(due - now);
        expected.push(secs(1.5f64.powi(n as i32).min(60.0) + 0.25));
        // Nothing happens a moment before the time.
        c.handle_timeout(due - secs(0.001), 0.25);
        assert_eq!(actions(&mut c), vec![]);
        now = due;
        c.handle_timeout(now, 0.25);
        assert_eq!(actions(&mut c), vec![Action::Connect]);
        assert_eq!(c.state(), State::Connecting { first: false });
        assert_eq!(c.connection_failed(now, 0.25), Ok(false));
    }
    for (s, e) in seen.iter().zip(&expected) {
        assert!(s.abs_diff(*e) < Duration::from_millis(1), "{s:?} vs {e:?}");
    }
    assert!(seen.last().unwrap() <= &secs(60.25));
    // A success resets the backoff.
    let due = c.poll_timeout().unwrap();
    c.handle_timeout(due, 0.0);
    actions(&mut c);
    c.connection_made(due).unwrap();
    c.connection_lost(due + secs(1.0), 0.0).unwrap();
    assert_eq!(c.poll_timeout(), Some(due + secs(1.0) + secs(1.5)));
}

/// Keepalive: a ping every interval while frames arrive; two silent intervals drop the
/// link and schedule a retry.
#[test]
fn keepalive_pings_and_gives_up_a_silent_link() {
    let t0 = Instant::now();
    let mut c = Connector::new(cfg());
    actions(&mut c);
    c.connection_made(t0).unwrap();
    assert_eq!(c.poll_timeout(), Some(t0 + KEEP));
    // A frame (the pong) after each ping keeps the link.
    let mut now = t0;
    for _ in 0..5 {
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now, 0.0);
        assert_eq!(actions(&mut c), vec![Action::Ping]);
        c.frame_received(now + secs(0.1)).unwrap();
    }
    // Now silence: one more ping at +30 s (silent 29.9 s), then at +60 s the link has been
    // silent for more than two intervals.
    let last_rx = now + secs(0.1);
    now = c.poll_timeout().unwrap();
    c.handle_timeout(now, 0.0);
    assert_eq!(actions(&mut c), vec![Action::Ping]);
    now = c.poll_timeout().unwrap();
    assert!(now - last_rx < KEEP * 2);
    c.handle_timeout(now, 0.0);
    assert_eq!(actions(&mut c), vec![Action::Ping]);
    now = c.poll_timeout().unwrap();
    assert!(now - last_rx > KEEP * 2);
    c.handle_timeout(now, 0.5);
    assert_eq!(actions(&mut c), vec![Action::DropLink]);
    assert_eq!(
        c.state(),
        State::Waiting {
            retry_at: now + secs(1.5 + 0.5)
        }
    );
}

/// The close deadline fires once, exactly at close_timeout after the close began, even
/// while disconnected; stopping clears every timer.
#[test]
fn close_deadline() {
    let t0 = Instant::now();
    let mut c = Connector::new(cfg());
    actions(&mut c);
    c.connection_made(t0).unwrap();
    c.connection_lost(t0 + secs(1.0), 0.0).unwrap();
    c.closing(t0 + secs(2.0));
    c.closing(t0 + secs(5.0)); // keeps the first deadline
    let deadline = t0 + secs(12.0);
    // The retry at +2.5 s comes first, then the deadline.
    assert_eq!(c.poll_timeout(), Some(t0 + secs(2.5)));
    c.handle_timeout(t0 + secs(2.5), 0.0);
    assert_eq!(actions(&mut c), vec![Action::Connect]);
    assert_eq!(c.poll_timeout(), Some(deadline));
    c.handle_timeout(deadline - secs(0.001), 0.0);
    assert_eq!(actions(&mut c), vec![]);
    c.handle_timeout(deadline, 0.0);
    assert_eq!(actions(&mut c), vec![Action::AbandonClose]);
    c.handle_timeout(deadline + secs(1.0), 0.0);
    assert_eq!(actions(&mut c), vec![], "once only");
    assert_eq!(c.poll_timeout(), None);
    c.stop();
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.state(), State::Stopped);
}

/// Inputs that make no sense in the current state are errors, never ignored.
#[test]
fn invalid_inputs_per_state() {
    let t0 = Instant::now();
    let mut c = Connector::new(cfg());
    // Connecting
    assert!(c.frame_received(t0).is_err());
    assert!(c.connection_lost(t0, 0.0).is_err());
    c.connection_made(t0).unwrap();
    // Connected
    assert!(c.connection_made(t0).is_err());
    assert!(c.connection_failed(t0, 0.0).is_err());
    c.connection_lost(t0, 0.0).unwrap();
    // Waiting
    assert!(c.connection_made(t0).is_err());
    assert!(c.connection_failed(t0, 0.0).is_err());
    assert!(c.frame_received(t0).is_err());
    assert!(c.connection_lost(t0, 0.0).is_err());
    // Stopped
    c.stop();
    for r in [
        c.connection_made(t0).map(drop),
        c.connection_failed(t0, 0.0).map(drop),
        c.frame_received(t0),
        c.connection_lost(t0, 0.0),
    ] {
        assert!(matches!(r, Err(Error::Internal(_))), "{r:?}");
    }
}
