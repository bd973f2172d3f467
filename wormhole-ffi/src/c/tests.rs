//! Rust tests that call the `extern "C"` functions directly, as C would: NULLs, invalid
//! UTF-8, panic mapping, result codes, `user_data_free` exactly once, the pull API and its
//! fd. No network: the only server address used is a closed loopback port.

use std::ffi::{CStr, c_char, c_void};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wormhole_core::ErrorKind;

use super::*;

const APP: &CStr = c"example.com/ffi-tests";
/// Port 1 on loopback: nothing listens, so the connection fails at once.
const DEAD: &CStr = c"ws://127.0.0.1:1/v1";

fn s(p: *const c_char) -> String {
    assert!(!p.is_null());
    // SAFETY: test-only; the library returns NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned()
}

#[test]
fn result_codes_are_stable_and_described() {
    for n in 0..200u32 {
        match wh_result::from_u32(n) {
            Some(r) => {
                assert_eq!(r as u32, n);
                assert_ne!(s(wh_result_str(n)), "unknown result code");
            }
            None => assert_eq!(s(wh_result_str(n)), "unknown result code"),
        }
    }
    assert_eq!(s(wh_result_str(0)), "ok");
    assert_eq!(wh_result::Panic as u32, 102);
    // Core kinds keep their numbers (the two added after the C codes 104/105 existed map to
    // those), and each code's description is core's.
    for kind in ErrorKind::ALL {
        let r = wh_result::from(kind);
        match kind {
            ErrorKind::InProgress => assert_eq!(r, wh_result::InProgress),
            ErrorKind::InvalidState => assert_eq!(r, wh_result::InvalidState),
            _ => assert_eq!(r as u32, kind as u32, "{kind:?}"),
        }
        assert_eq!(s(wh_result_str(r as u32)), kind.description(), "{kind:?}");
    }
}

#[test]
fn panics_become_the_return_types_default() {
    fn result_fn() -> wh_result {
        ffi_boundary! {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            wh_result::Ok
        }
    }
    fn ptr_fn() -> *const c_char {
        ffi_boundary! {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            c"x".as_ptr()
        }
    }
    fn kind_fn() -> wh_event_kind {
        ffi_boundary! {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            wh_event_kind::Code
        }
    }
    assert_eq!(result_fn(), wh_result::Panic);
    assert!(ptr_fn().is_null());
    assert_eq!(kind_fn(), wh_event_kind::None);
}

#[test]
fn null_arguments_are_rejected() {
    let mut w: *mut wh_wormhole = null_mut();
    assert_eq!(
        wh_create(null(), DEAD.as_ptr(), null(), null(), null(), &mut w),
        wh_result::NullArgument
    );
    assert_eq!(
        wh_create(APP.as_ptr(), null(), null(), null(), null(), &mut w),
        wh_result::NullArgument
    );
    assert_eq!(
        wh_create(
            APP.as_ptr(),
            DEAD.as_ptr(),
            null(),
            null(),
            null(),
            null_mut()
        ),
        wh_result::NullArgument
    );
    assert!(w.is_null(), "out-param untouched on error");
    assert_eq!(wh_allocate_code(null(), 2), wh_result::NullArgument);
    assert_eq!(
        wh_set_code(null(), c"1-a".as_ptr()),
        wh_result::NullArgument
    );
    assert_eq!(wh_input_code(null()), wh_result::NullArgument);
    assert_eq!(wh_input_refresh_nameplates(null()), wh_result::NullArgument);
    assert_eq!(wh_send(null(), null(), 0), wh_result::NullArgument);
    assert_eq!(wh_send_text(null(), c"x".as_ptr()), wh_result::NullArgument);
    assert_eq!(wh_receive_text(null()), wh_result::NullArgument);
    assert_eq!(wh_close(null()), wh_result::NullArgument);
    assert_eq!(wh_cancel(null()), wh_result::NullArgument);
    let mut fd = -7;
    assert_eq!(wh_event_fd(null(), &mut fd), wh_result::NullArgument);
    assert_eq!(fd, -7);
    let mut ev: *mut wh_event = null_mut();
    assert_eq!(wh_next_event(null(), 0, &mut ev), wh_result::NullArgument);
    assert_eq!(wh_event_get_kind(null()), wh_event_kind::None);
    assert_eq!(wh_event_result(null()), wh_result::NullArgument);
    assert!(wh_event_text(null()).is_null());
    assert!(wh_event_data(null()).is_null());
    assert_eq!(wh_event_len(null()), 0);
    assert_eq!(wh_string_array_len(null()), 0);
    wh_free(null_mut());
    wh_event_free(null_mut());
    wh_string_array_free(null_mut());
}

static FREED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_free(user_data: *mut c_void) {
    assert_eq!(user_data as usize, 0x5eed);
    FREED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn failed_create_calls_user_data_free_once_and_rejects_bad_utf8() {
    let before = FREED.load(Ordering::SeqCst);
    let d = wh_delegate {
        user_data: 0x5eed as *mut c_void,
        user_data_free: Some(count_free),
        ..delegate_none()
    };
    let mut w: *mut wh_wormhole = null_mut();
    let bad = [0xffu8, 0xfe, 0];
    assert_eq!(
        wh_create(
            bad.as_ptr().cast(),
            DEAD.as_ptr(),
            null(),
            null(),
            &d,
            &mut w
        ),
        wh_result::InvalidUtf8
    );
    assert_eq!(
        wh_create(
            APP.as_ptr(),
            c"http://x/v1".as_ptr(),
            null(),
            null(),
            &d,
            &mut w
        ),
        wh_result::InvalidArgument
    );
    assert_eq!(
        wh_create(
            APP.as_ptr(),
            DEAD.as_ptr(),
            c"[1]".as_ptr(),
            null(),
            &d,
            &mut w
        ),
        wh_result::InvalidArgument
    );
    assert_eq!(
        wh_create(
            APP.as_ptr(),
            DEAD.as_ptr(),
            c"{nope".as_ptr(),
            null(),
            &d,
            &mut w
        ),
        wh_result::InvalidArgument
    );
    assert!(w.is_null());
    assert_eq!(FREED.load(Ordering::SeqCst) - before, 4);
}

fn delegate_none() -> wh_delegate {
    wh_delegate {
        user_data: null_mut(),
        user_data_free: None,
        got_welcome: None,
        got_code: None,
        got_unverified_key: None,
        got_verifier: None,
        got_versions: None,
        got_message: None,
        closed: None,
        text_sent: None,
        text_received: None,
        wordlist_available: None,
        file_offer: None,
        transfer_progress: None,
        file_sent: None,
        file_received: None,
        dilation: None,
    }
}

/// What the delegate test records, behind `user_data`.
#[derive(Default)]
struct Seen {
    closed: Mutex<Option<(wh_result, String)>>,
    cv: Condvar,
    frees: AtomicUsize,
    thread: Mutex<Option<String>>,
}

unsafe extern "C" fn on_closed(ud: *mut c_void, result: wh_result, msg: *const c_char) {
    // SAFETY: test-only: `ud` is the `Arc<Seen>` pointer lent in `delegate_mode…`.
    let seen = unsafe { &*(ud as *const Seen) };
    *seen.thread.lock().unwrap() = std::thread::current().name().map(str::to_owned);
    *seen.closed.lock().unwrap() = Some((result, s(msg)));
    seen.cv.notify_all();
}

unsafe extern "C" fn release_seen(ud: *mut c_void) {
    // SAFETY: test-only: takes back the reference lent with `Arc::into_raw`.
    let seen = unsafe { Arc::from_raw(ud as *const Seen) };
    seen.frees.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn delegate_mode_runs_on_the_dispatcher_and_frees_user_data_once() {
    let seen = Arc::new(Seen::default());
    let d = wh_delegate {
        user_data: Arc::into_raw(seen.clone()) as *mut c_void,
        user_data_free: Some(release_seen),
        closed: Some(on_closed),
        ..delegate_none()
    };
    let mut w: *mut wh_wormhole = null_mut();
    assert_eq!(
        wh_create(APP.as_ptr(), DEAD.as_ptr(), null(), null(), &d, &mut w),
        wh_result::Ok
    );
    let mut ev: *mut wh_event = null_mut();
    assert_eq!(wh_next_event(w, 0, &mut ev), wh_result::InvalidState);
    let mut fd = 0;
    assert_eq!(wh_event_fd(w, &mut fd), wh_result::InvalidState);
    {
        let g = seen.closed.lock().unwrap();
        let (g, _) = seen
            .cv
            .wait_timeout_while(g, Duration::from_secs(20), |c| c.is_none())
            .unwrap();
        let (r, _msg) = g.clone().expect("closed callback");
        assert_eq!(r, wh_result::ServerConnection);
    }
    assert_eq!(
        seen.thread.lock().unwrap().as_deref(),
        Some("wormhole-dispatch")
    );
    assert_eq!(seen.frees.load(Ordering::SeqCst), 0);
    wh_free(w);
    assert_eq!(seen.frees.load(Ordering::SeqCst), 1);
    assert_eq!(Arc::strong_count(&seen), 1);
}

#[cfg(unix)]
#[test]
fn pull_mode_reports_the_connection_failure_and_the_fd_follows_the_queue() {
    let mut w: *mut wh_wormhole = null_mut();
    let opts = wh_options {
        connect_timeout_ms: 5000,
        ..Default::default()
    };
    assert_eq!(
        wh_create(
            APP.as_ptr(),
            DEAD.as_ptr(),
            c"{}".as_ptr(),
            &opts,
            null(),
            &mut w
        ),
        wh_result::Ok
    );
    let mut fd = -1;
    assert_eq!(wh_event_fd(w, &mut fd), wh_result::Ok);
    assert!(fd >= 0);
    let readable = |timeout: i32| {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: test-only; one valid pollfd.
        unsafe { libc::poll(&mut p, 1, timeout) == 1 }
    };
    assert!(readable(20_000), "the closed event makes the fd readable");
    let mut ev: *mut wh_event = null_mut();
    assert_eq!(wh_next_event(w, 0, &mut ev), wh_result::Ok);
    assert!(!readable(0), "drained queue: fd not readable");
    assert_eq!(wh_event_get_kind(ev), wh_event_kind::Closed);
    assert_eq!(wh_event_result(ev), wh_result::ServerConnection);
    assert!(!s(wh_event_text(ev)).is_empty());
    assert_eq!(wh_event_len(ev), s(wh_event_text(ev)).len());
    let mut ev2: *mut wh_event = null_mut();
    assert_eq!(wh_next_event(w, 10, &mut ev2), wh_result::Closed);
    assert!(ev2.is_null());
    // After the close: calls report the outcome; close and cancel stay harmless.
    assert_eq!(wh_send(w, b"x".as_ptr(), 1), wh_result::ServerConnection);
    assert_eq!(wh_close(w), wh_result::Ok);
    assert_eq!(wh_cancel(w), wh_result::Ok);
    let mut key = [0u8; 8];
    assert_eq!(
        wh_derive_key(w, c"p".as_ptr(), key.as_mut_ptr(), key.len()),
        wh_result::NoKey
    );
    wh_free(w);
    // The event outlives its wormhole.
    assert_eq!(wh_event_get_kind(ev), wh_event_kind::Closed);
    wh_event_free(ev);
}

/// A server that accepts TCP connections and never answers, so a wormhole on it stays
/// open (unlike `DEAD`, where it closes as soon as the connection is refused). Keep the
/// listener alive while the wormhole is used.
fn silent_server() -> (std::net::TcpListener, std::ffi::CString) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://127.0.0.1:{}/v1", l.local_addr().unwrap().port());
    (l, std::ffi::CString::new(url).unwrap())
}

#[test]
fn argument_errors_on_a_live_handle() {
    let (_silent, url) = silent_server();
    let mut w: *mut wh_wormhole = null_mut();
    assert_eq!(
        wh_create(APP.as_ptr(), url.as_ptr(), null(), null(), null(), &mut w),
        wh_result::Ok
    );
    let bad = [b'1', b'-', 0xff, 0];
    assert_eq!(wh_set_code(w, bad.as_ptr().cast()), wh_result::InvalidUtf8);
    assert_eq!(
        wh_set_code(w, c"x-bad code".as_ptr()),
        wh_result::InvalidCode
    );
    assert_eq!(wh_set_code(w, null()), wh_result::NullArgument);
    assert_eq!(wh_send(w, null(), 3), wh_result::NullArgument);
    assert_eq!(wh_allocate_code(w, 1000), wh_result::InvalidArgument);
    assert_eq!(
        wh_input_choose_nameplate(w, c"1".as_ptr()),
        wh_result::InvalidState
    );
    let mut key = [0u8; 4];
    assert_eq!(
        wh_derive_key(w, c"p".as_ptr(), null_mut(), 4),
        wh_result::NullArgument
    );
    assert_eq!(
        wh_derive_key(w, c"p".as_ptr(), key.as_mut_ptr(), 0),
        wh_result::InvalidArgument
    );
    assert_eq!(wh_input_code(w), wh_result::Ok);
    assert_eq!(wh_set_code(w, c"1-a".as_ptr()), wh_result::OnlyOneCode);
    let mut list: *mut *mut c_char = null_mut();
    assert_eq!(
        wh_input_word_completions(w, c"pu".as_ptr(), &mut list),
        wh_result::MustChooseNameplateFirst
    );
    assert!(list.is_null());
    assert_eq!(
        wh_input_nameplate_completions(w, c"".as_ptr(), &mut list),
        wh_result::Ok
    );
    assert_eq!(wh_string_array_len(list), 0);
    wh_string_array_free(list);
    assert_eq!(
        wh_input_choose_nameplate(w, c"x".as_ptr()),
        wh_result::InvalidCode
    );
    assert_eq!(wh_input_choose_nameplate(w, c"7".as_ptr()), wh_result::Ok);
    assert_eq!(
        wh_input_refresh_nameplates(w),
        wh_result::AlreadyChoseNameplate
    );
    assert_eq!(wh_send_text(w, c"hi".as_ptr()), wh_result::Ok);
    assert_eq!(wh_receive_text(w), wh_result::InProgress);
    wh_free(w);
}

#[test]
fn string_arrays_round_trip() {
    let a = crate::c::strings::string_array_into_raw(["1-".to_owned(), "12-".to_owned()]);
    assert_eq!(wh_string_array_len(a), 2);
    // SAFETY: test-only; two entries then NULL.
    unsafe {
        assert_eq!(s(*a), "1-");
        assert_eq!(s(*a.add(1)), "12-");
        assert!((*a.add(2)).is_null());
    }
    wh_string_array_free(a);
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let header = include_str!("../../../include/wormhole.h");
    let find = |name: &str| {
        header
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing from the header"))
            .trim()
            .to_owned()
    };
    assert_eq!(find("WH_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MAJOR"));
    assert_eq!(find("WH_VERSION_MINOR"), env!("CARGO_PKG_VERSION_MINOR"));
    assert_eq!(find("WH_VERSION_PATCH"), env!("CARGO_PKG_VERSION_PATCH"));
    assert_eq!(
        find("WH_VERSION"),
        format!("\"{}\"", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(s(wh_version()), env!("CARGO_PKG_VERSION"));
}

/// The handle `free_self_on_close` frees from inside its own callback.
static SELF_FREEING: std::sync::atomic::AtomicPtr<wh_wormhole> =
    std::sync::atomic::AtomicPtr::new(null_mut());

unsafe extern "C" fn free_self_on_close(_ud: *mut c_void, _r: wh_result, _m: *const c_char) {
    let w = SELF_FREEING.swap(null_mut(), Ordering::SeqCst);
    // Must return at once: the teardown finishes on this thread after the callback.
    wh_free(w);
}

unsafe extern "C" fn release_seen_and_signal(ud: *mut c_void) {
    // SAFETY: test-only: takes back the reference lent with `Arc::into_raw`.
    let seen = unsafe { Arc::from_raw(ud as *const Seen) };
    seen.frees.fetch_add(1, Ordering::SeqCst);
    *seen.closed.lock().unwrap() = Some((wh_result::Ok, "freed".into()));
    seen.cv.notify_all();
}

#[test]
fn free_from_inside_a_callback_defers_the_teardown() {
    let seen = Arc::new(Seen::default());
    let d = wh_delegate {
        user_data: Arc::into_raw(seen.clone()) as *mut c_void,
        user_data_free: Some(release_seen_and_signal),
        closed: Some(free_self_on_close),
        ..delegate_none()
    };
    let mut w: *mut wh_wormhole = null_mut();
    assert_eq!(
        wh_create(APP.as_ptr(), DEAD.as_ptr(), null(), null(), &d, &mut w),
        wh_result::Ok
    );
    SELF_FREEING.store(w, Ordering::SeqCst);
    let g = seen.closed.lock().unwrap();
    let (g, _) = seen
        .cv
        .wait_timeout_while(g, Duration::from_secs(20), |c| c.is_none())
        .unwrap();
    assert!(g.is_some(), "user_data_free ran after the self-free");
    drop(g);
    assert_eq!(seen.frees.load(Ordering::SeqCst), 1);
}

#[test]
fn header_constants_match_core() {
    let header = include_str!("../../../include/wormhole.h");
    assert!(header.contains(&format!(
        "#define WH_TRANSFER_APPID \"{}\"",
        wormhole_core::TRANSFER_APPID
    )));
    assert!(header.contains(&format!(
        "#define WH_PUBLIC_RELAY_URL \"{}\"",
        wormhole_core::PUBLIC_RELAY_URL
    )));
}

#[test]
fn codes_are_validated_without_a_wormhole() {
    assert_eq!(
        wh_validate_code(c"7-purple-sausages".as_ptr()),
        wh_result::Ok
    );
    assert_eq!(
        wh_validate_code(c"7-purple sausages".as_ptr()),
        wh_result::InvalidCode
    );
    assert_eq!(
        wh_validate_code(c"x-purple".as_ptr()),
        wh_result::InvalidCode
    );
    assert_eq!(wh_validate_code(null()), wh_result::NullArgument);
    let bad = [b'7', b'-', 0xff, 0];
    assert_eq!(
        wh_validate_code(bad.as_ptr().cast()),
        wh_result::InvalidUtf8
    );
}

/// The next event of kind `kind` (others are skipped), within 20 s.
fn next_of(w: *mut wh_wormhole, kind: wh_event_kind) -> *mut wh_event {
    loop {
        let mut ev: *mut wh_event = null_mut();
        assert_eq!(wh_next_event(w, 20_000, &mut ev), wh_result::Ok);
        if wh_event_get_kind(ev) == kind {
            return ev;
        }
        wh_event_free(ev);
    }
}

#[test]
fn file_transfer_argument_errors() {
    assert_eq!(
        wh_send_file(null(), c"Cargo.toml".as_ptr(), null()),
        wh_result::NullArgument
    );
    assert_eq!(wh_receive_file(null(), null()), wh_result::NullArgument);
    assert_eq!(
        wh_accept_offer(null(), c".".as_ptr(), false),
        wh_result::NullArgument
    );
    assert_eq!(wh_reject_offer(null()), wh_result::NullArgument);
    assert_eq!(wh_cancel_transfer(null()), wh_result::NullArgument);
    assert_eq!(wh_event_offer_kind(null()), wh_offer_kind::None);
    assert_eq!(wh_event_bytes_done(null()), 0);
    assert_eq!(wh_event_bytes_total(null()), 0);

    let (_silent, url) = silent_server();
    let mut w: *mut wh_wormhole = null_mut();
    assert_eq!(
        wh_create(APP.as_ptr(), url.as_ptr(), null(), null(), null(), &mut w),
        wh_result::Ok
    );
    let bad = [b'x', 0xff, 0];
    assert_eq!(wh_send_file(w, null(), null()), wh_result::NullArgument);
    assert_eq!(
        wh_send_file(w, bad.as_ptr().cast(), null()),
        wh_result::InvalidUtf8
    );
    assert_eq!(
        wh_send_file(w, c"/nonexistent/wormhole-ffi-test".as_ptr(), null()),
        wh_result::InvalidArgument
    );
    let mut o = wh_transfer_options {
        transit_relay: c"relay.example:4001".as_ptr(),
        no_listen: false,
        progress_interval_ms: 0,
    };
    assert_eq!(
        wh_send_file(w, c"Cargo.toml".as_ptr(), &o),
        wh_result::InvalidArgument
    );
    assert_eq!(wh_receive_file(w, &o), wh_result::InvalidArgument);
    o.transit_relay = bad.as_ptr().cast();
    assert_eq!(wh_receive_file(w, &o), wh_result::InvalidUtf8);
    // Nothing pending: accept and reject do not fit; cancel is harmless.
    assert_eq!(wh_accept_offer(w, null(), false), wh_result::NullArgument);
    assert_eq!(
        wh_accept_offer(w, bad.as_ptr().cast(), false),
        wh_result::InvalidUtf8
    );
    assert_eq!(
        wh_accept_offer(w, c".".as_ptr(), false),
        wh_result::InvalidState
    );
    assert_eq!(wh_reject_offer(w), wh_result::InvalidState);
    assert_eq!(wh_cancel_transfer(w), wh_result::Ok);

    // One transfer at a time, text or file.
    o.transit_relay = c"tcp:127.0.0.1:1".as_ptr();
    o.no_listen = true;
    assert_eq!(wh_receive_file(w, &o), wh_result::Ok);
    assert_eq!(wh_receive_file(w, null()), wh_result::InProgress);
    assert_eq!(
        wh_send_file(w, c"Cargo.toml".as_ptr(), null()),
        wh_result::InProgress
    );
    assert_eq!(wh_send_text(w, c"hi".as_ptr()), wh_result::InProgress);
    assert_eq!(wh_receive_text(w), wh_result::InProgress);
    // Still waiting for an offer.
    assert_eq!(
        wh_accept_offer(w, c".".as_ptr(), false),
        wh_result::InvalidState
    );
    assert_eq!(wh_reject_offer(w), wh_result::InvalidState);

    // Cancelling completes it exactly once, with CANCELLED.
    assert_eq!(wh_cancel_transfer(w), wh_result::Ok);
    assert_eq!(wh_cancel_transfer(w), wh_result::Ok);
    let ev = next_of(w, wh_event_kind::FileReceived);
    assert_eq!(wh_event_result(ev), wh_result::Cancelled);
    assert_eq!(wh_event_offer_kind(ev), wh_offer_kind::None);
    wh_event_free(ev);

    // The next one may start; closing the wormhole completes it before `closed`.
    assert_eq!(
        wh_send_file(w, c"Cargo.toml".as_ptr(), null()),
        wh_result::Ok
    );
    assert_eq!(wh_cancel(w), wh_result::Ok);
    let ev = next_of(w, wh_event_kind::FileSent);
    assert_ne!(wh_event_result(ev), wh_result::Ok);
    wh_event_free(ev);
    let ev = next_of(w, wh_event_kind::Closed);
    assert_eq!(wh_event_result(ev), wh_result::Cancelled);
    wh_event_free(ev);
    assert_eq!(
        wh_send_file(w, c"Cargo.toml".as_ptr(), null()),
        wh_result::Cancelled
    );
    assert_eq!(wh_receive_file(w, null()), wh_result::Cancelled);
    wh_free(w);
}

#[test]
fn free_with_a_file_transfer_pending() {
    // A silent server, not a refused connection: that could close the wormhole before
    // `wh_send_file`, which would then fail with SERVER_CONNECTION instead of starting.
    let (_silent, url) = silent_server();
    let mut w: *mut wh_wormhole = null_mut();
    assert_eq!(
        wh_create(APP.as_ptr(), url.as_ptr(), null(), null(), null(), &mut w),
        wh_result::Ok
    );
    assert_eq!(
        wh_send_file(w, c"Cargo.toml".as_ptr(), null()),
        wh_result::Ok
    );
    let started = std::time::Instant::now();
    wh_free(w);
    assert!(started.elapsed() < Duration::from_secs(10));
}
