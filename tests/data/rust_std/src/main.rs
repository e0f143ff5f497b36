//! What a Rust program does that broke under usertrap (issue 9): std gives
//! the main thread and every thread an 8 KiB alternate signal stack with a
//! guard page below it, so each of these ran the library's handlers on it.
//! Prints one deterministic line per step; exits 0 by returning from main
//! (the report at exit ran on that stack and hung at 100% CPU).
use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

/// Threads (each with std's alternate stack) handing a counter around with a
/// mutex and a condition variable: every wake-up is a futex syscall.
fn threads() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 200;
    let state = Arc::new((Mutex::new(0usize), Condvar::new()));
    let handles: Vec<_> = (0..THREADS)
        .map(|me| {
            let state = Arc::clone(&state);
            thread::spawn(move || {
                let (lock, cv) = &*state;
                for _ in 0..ROUNDS {
                    let mut turn = lock.lock().unwrap();
                    while *turn % THREADS != me {
                        turn = cv.wait(turn).unwrap();
                    }
                    *turn += 1;
                    cv.notify_all();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    println!("threads: {} turns", *state.0.lock().unwrap());
}

/// Command: status (posix_spawn), output (pipes), a shell, a failing status.
fn commands() {
    let st = Command::new("/bin/true").status().unwrap();
    println!("true: {}", st);
    let st = Command::new("/bin/false").status().unwrap();
    println!("false: {}", st);
    let out = Command::new("/bin/echo").args(["hello", "from", "echo"]).output().unwrap();
    print!("echo: {} {}", out.status, String::from_utf8_lossy(&out.stdout));
    let out = Command::new("/bin/sh").args(["-c", "echo out; echo err >&2; exit 3"]).output().unwrap();
    println!(
        "sh: {} stdout={:?} stderr={:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Stdin piped in, read back (a child with three pipes).
    let mut child = Command::new("/bin/cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"through cat\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    print!("cat: {} {}", out.status, String::from_utf8_lossy(&out.stdout));
    // A program that does not exist: the error comes back from the child.
    let e = Command::new("/nonexistent/program").status().unwrap_err();
    println!("missing program: {:?}", e.kind());
    // Commands from several threads at once.
    let hs: Vec<_> = (0..3)
        .map(|i| {
            thread::spawn(move || {
                let out = Command::new("/bin/echo").arg(format!("thread {}", i)).output().unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
        })
        .collect();
    for h in hs {
        print!("spawned from a thread: {}", h.join().unwrap());
    }
}

/// 1-byte reads (glibc's `read`: always the slow path), metadata.
fn files() {
    fs::write("rust_std.txt", b"0123456789abcdef").unwrap();
    let mut f = fs::File::open("rust_std.txt").unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match f.read(&mut b).unwrap() {
            0 => break,
            _ => got.push(b[0]),
        }
    }
    println!("read 1 byte at a time: {:?}", String::from_utf8_lossy(&got));
    let m = fs::metadata("rust_std.txt").unwrap();
    println!("metadata: len {} file {} dir {}", m.len(), m.is_file(), m.is_dir());
    let m = fs::metadata("/").unwrap();
    println!("metadata of /: dir {}", m.is_dir());
    println!("metadata of a missing file: {:?}", fs::metadata("no/such/file").unwrap_err().kind());
    fs::remove_file("rust_std.txt").unwrap();
}

/// A panic in a thread, caught by join, and one in main caught by
/// catch_unwind: the unwinder runs, and a hook captures a backtrace (which
/// reads the executable's symbols). std's default hook would print thread
/// ids, which differ between runs: this one prints what is the same.
fn panics() {
    std::panic::set_hook(Box::new(|info| {
        let bt = std::backtrace::Backtrace::force_capture().to_string();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!(
            "panic in thread {:?}: {} (backtrace through rust_std::panics: {})",
            thread::current().name().unwrap_or("?"),
            msg,
            bt.contains("rust_std::panics")
        );
    }));
    let r = thread::Builder::new()
        .name("panicker".into())
        .spawn(|| -> u32 { panic!("deliberate panic in a thread") })
        .unwrap()
        .join();
    let msg = r.unwrap_err().downcast::<&str>().map(|s| *s).unwrap_or("?");
    println!("caught a panic from a thread: {}", msg);
    let r = std::panic::catch_unwind(|| {
        let v: Vec<u32> = Vec::new();
        v[1]
    });
    println!("caught a panic in main: {}", r.is_err());
    let _ = std::panic::take_hook();
}

/// Endless recursion, in main or in a thread: std's SIGSEGV handler runs on
/// its alternate stack, says which thread overflowed and aborts.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64, buf: &mut [u8; 256]) -> u64 {
    let mut local = [0u8; 256];
    local[(depth % 256) as usize] = buf[(depth % 256) as usize].wrapping_add(1);
    std::hint::black_box(&mut local);
    recurse(depth + 1, &mut local) + local[0] as u64
}

/// Runs this program again to overflow its stack (in the main thread, then
/// in a named thread); the child dies of SIGABRT after std's message.
fn stack_overflows() {
    use std::os::unix::process::ExitStatusExt;
    let me = std::env::current_exe().unwrap();
    for how in ["overflow-main", "overflow-thread"] {
        let out = Command::new(&me).arg(how).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        println!(
            "{}: signal {:?}, stdout {:?}, says it overflowed: {}",
            how,
            out.status.signal(),
            String::from_utf8_lossy(&out.stdout),
            err.contains("has overflowed its stack")
        );
    }
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("overflow-main") => {
            println!("overflowing main");
            recurse(0, &mut [0; 256]);
            return;
        }
        Some("overflow-thread") => {
            thread::Builder::new().name("deep".into()).spawn(|| recurse(0, &mut [0; 256])).unwrap().join().unwrap();
            return;
        }
        _ => {}
    }
    println!("rust_std: start");
    threads();
    commands();
    files();
    panics();
    stack_overflows();
    println!("rust_std: returning from main");
}
