//! One encoder on a thread of its own, so that compression runs while the caller goes on (the runner:
//! prediction): whole rows are gathered into messages of a fixed size and sent over a bounded channel; the
//! thread's error, if it stops, is what a later write or [`Threaded::finish`] returns.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// An encoder running on its own thread, fed bytes in messages of `message_len`.
pub(crate) struct Threaded {
    sender: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<Result<(), String>>>,
    /// Bytes gathered for the next message.
    pending: Vec<u8>,
    message_len: usize,
    /// What the thread is, for messages ("the TIFF writer").
    what: &'static str,
}

impl Threaded {
    /// Starts `encode` on a thread named `name`, which reads messages of `message_len` bytes (the last
    /// one shorter) until the channel closes; at most `capacity` messages wait.
    pub(crate) fn spawn(
        name: &str,
        what: &'static str,
        message_len: usize,
        capacity: usize,
        encode: impl FnOnce(Receiver<Vec<u8>>) -> Result<(), String> + Send + 'static,
    ) -> Result<Threaded, String> {
        let (sender, receiver) = mpsc::sync_channel::<Vec<u8>>(capacity);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || encode(receiver))
            .map_err(|e| e.to_string())?;
        Ok(Threaded { sender: Some(sender), thread: Some(thread), pending: Vec::new(), message_len, what })
    }

    pub(crate) fn write(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            let take = (self.message_len - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == self.message_len {
                self.send()?;
            }
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), String> {
        let message = std::mem::replace(&mut self.pending, Vec::with_capacity(self.message_len));
        let sent = self.sender.as_ref().map(|s| s.send(message).is_ok()).unwrap_or(false);
        if !sent {
            // The thread stopped: its error says why.
            return Err(self.join().err().unwrap_or_else(|| format!("{} stopped", self.what)));
        }
        Ok(())
    }

    fn join(&mut self) -> Result<(), String> {
        self.sender = None;
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| Err(format!("{} panicked", self.what))),
            None => Ok(()),
        }
    }

    /// Sends the last bytes, then waits for the thread to finish its file.
    pub(crate) fn finish(mut self) -> Result<(), String> {
        if !self.pending.is_empty() {
            self.send()?;
        }
        self.join()
    }
}
