//! A thread pool that never queues: a job goes to an idle thread if there is one, else to a new
//! thread, which joins the pool when the job is done. Short connections then cost no thread
//! start, and thousands of long ones still each get a thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct Pool {
    idle: Arc<AtomicUsize>,
    tx: Sender<Job>,
    rx: Arc<Mutex<Receiver<Job>>>,
    stack: usize,
}

impl Pool {
    /// A pool whose threads have `stack` bytes of stack, `warm` of them started at once.
    pub fn new(stack: usize, warm: usize) -> Self {
        let (tx, rx) = channel();
        let p = Pool {
            idle: Arc::new(AtomicUsize::new(0)),
            tx,
            rx: Arc::new(Mutex::new(rx)),
            stack,
        };
        for _ in 0..warm {
            p.start_thread(None);
        }
        p
    }

    fn start_thread(&self, first: Option<Job>) -> bool {
        let (idle, rx) = (self.idle.clone(), self.rx.clone());
        thread::Builder::new()
            .stack_size(self.stack)
            .spawn(move || {
                if let Some(j) = first {
                    j();
                }
                loop {
                    idle.fetch_add(1, Ordering::AcqRel);
                    let job = match rx.lock().unwrap().recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    };
                    job();
                }
            })
            .is_ok()
    }

    /// Runs `f` on an idle thread or a new one. False if no thread could be started.
    pub fn run(&self, f: impl FnOnce() + Send + 'static) -> bool {
        // Claim an idle thread: each claim matches one thread that is (about to be) waiting.
        let claimed = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if claimed {
            self.tx.send(Box::new(f)).is_ok()
        } else {
            self.start_thread(Some(Box::new(f)))
        }
    }
}
