//! A tiny SMTP server for tests: speaks just enough of RFC 5321 for a client to deliver, and
//! hands each delivered message to the test.

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

/// One delivered message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub recipients: Vec<String>,
    pub data: String,
}

pub struct SmtpSink {
    port: u16,
    received: Mutex<mpsc::Receiver<Mail>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        SmtpSink::start_with(|stream| async move { Some(stream) }).await
    }

    /// A sink whose accepted connections `accept` turns into the stream SMTP is spoken on (a TLS
    /// stream, in the TLS tests); `None` drops the connection.
    pub async fn start_with<S, F, Fut>(accept: F) -> SmtpSink
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<S>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, received) = mpsc::channel(64);
        let accept = Arc::new(accept);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sender = sender.clone();
                let accept = accept.clone();
                tokio::spawn(async move {
                    if let Some(stream) = accept(stream).await {
                        session(stream, sender).await;
                    }
                });
            }
        });
        SmtpSink { port, received: Mutex::new(received) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next delivered message (waits up to 10 s).
    pub async fn next_message(&self) -> Mail {
        let mut received = self.received.lock().await;
        tokio::time::timeout(std::time::Duration::from_secs(10), received.recv())
            .await
            .expect("no mail within 10 s")
            .expect("sink stopped")
    }
}

/// The 8-digit code after "is " in a message.
pub fn eight_digits(text: &str) -> Option<String> {
    text.match_indices("is ").find_map(|(at, _)| {
        let code: String = text[at + 3..].chars().take_while(char::is_ascii_digit).collect();
        (code.len() == 8).then_some(code)
    })
}

/// One SMTP session: just enough of RFC 5321 for a client to deliver.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(stream: S, sender: mpsc::Sender<Mail>) {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
    let mut recipients = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 sink\r\n",
            "RCPT" => {
                recipients.push(line[line.find(':').unwrap() + 1..].trim().to_owned());
                b"250 OK\r\n"
            }
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await.unwrap();
                let mut data = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line == "." {
                        break;
                    }
                    data.push_str(&line);
                    data.push('\n');
                }
                let mail = Mail { recipients: std::mem::take(&mut recipients), data };
                sender.send(mail).await.unwrap();
                b"250 OK queued\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await.unwrap();
                break;
            }
            _ => b"250 OK\r\n",
        };
        write.write_all(reply).await.unwrap();
    }
}
