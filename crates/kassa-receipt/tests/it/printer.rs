//! Printers: a TCP printer receives exactly the job, a printer that is not there or does not
//! read fails clearly within its limits, a file printer appends.

use std::time::{Duration, Instant};

use kassa_receipt::testing::FakePrinter;
use kassa_receipt::{escpos, Copy, Lang, PrintError, PrintLimits, Printer};

use crate::fixtures;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_tcp_printer_receives_exactly_the_bytes_one_job_per_connection() {
    let mut fake = FakePrinter::start().await.unwrap();
    let printer = Printer::parse(&format!("tcp://{}", fake.addr())).unwrap();
    assert_eq!(printer, fake.printer());
    let merchant = escpos(&fixtures::card_sale(), Copy::Merchant, Lang::Zh);
    let customer = escpos(&fixtures::card_sale(), Copy::Customer, Lang::Zh);
    printer.print(&merchant).await.unwrap();
    printer.print(&customer).await.unwrap();
    assert_eq!(fake.next_job(WAIT).await, Some(merchant));
    assert_eq!(fake.next_job(WAIT).await, Some(customer));
    assert_eq!(fake.next_job(Duration::from_millis(50)).await, None);
}

#[tokio::test]
async fn a_printer_that_is_not_listening_is_a_clear_error_at_once() {
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let started = Instant::now();
    let error = Printer::Tcp(addr).print(b"slip").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(matches!(error, PrintError::Connect { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&addr.to_string()) && message.contains("cannot connect"), "{message}");
}

#[tokio::test]
async fn a_printer_that_never_accepts_times_out_connecting() {
    // A listener whose accept queue is full drops further SYNs, as a printer behind a dropping
    // firewall does: the connection neither succeeds nor fails until the timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    let limits = PrintLimits { connect_timeout_ms: 300, ..PrintLimits::default() };
    let mut timed_out = None;
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(error)) => panic!("connect failed: {error}"),
            Err(_) => {
                let started = Instant::now();
                timed_out = Some((Printer::Tcp(addr).print_with(b"slip", limits).await, started.elapsed()));
                break;
            }
        }
    }
    let (result, elapsed) = timed_out.expect("the accept queue never filled");
    let error = result.unwrap_err();
    assert!(matches!(error, PrintError::ConnectTimeout { timeout_ms: 300, .. }), "{error:?}");
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(error.to_string().contains("did not answer within 300 ms"), "{error}");
}

#[tokio::test]
async fn a_printer_that_stops_reading_times_out_writing() {
    let fake = FakePrinter::stalled().await.unwrap();
    // More than the loopback socket buffers hold, so the write blocks.
    let job = vec![b'-'; 48 << 20];
    let limits = PrintLimits { write_timeout_ms: 300, job_bytes_max: 64 << 20, ..PrintLimits::default() };
    let started = Instant::now();
    let error = fake.printer().print_with(&job, limits).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(matches!(error, PrintError::WriteTimeout { timeout_ms: 300, .. }), "{error:?}");
    assert!(error.to_string().contains("check paper"), "{error}");
}

#[tokio::test]
async fn a_job_over_the_limit_is_refused_before_sending() {
    let mut fake = FakePrinter::start().await.unwrap();
    let job = vec![0u8; PrintLimits::default().job_bytes_max + 1];
    let error = fake.printer().print(&job).await.unwrap_err();
    assert!(matches!(error, PrintError::TooLarge { .. }), "{error:?}");
    assert_eq!(fake.next_job(Duration::from_millis(100)).await, None);
}

#[tokio::test]
async fn a_file_printer_appends_each_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slips.escpos");
    std::fs::write(&path, b"earlier").unwrap();
    let printer = Printer::parse(path.to_str().unwrap()).unwrap();
    let merchant = escpos(&fixtures::qr_payment(), Copy::Merchant, Lang::En);
    let customer = escpos(&fixtures::qr_payment(), Copy::Customer, Lang::En);
    printer.print(&merchant).await.unwrap();
    printer.print(&customer).await.unwrap();
    let written = std::fs::read(&path).unwrap();
    assert_eq!(written, [b"earlier".as_slice(), &merchant, &customer].concat());
}

#[tokio::test]
async fn a_file_printer_in_a_missing_folder_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("slips.escpos");
    let error = Printer::File(path.clone()).print(b"slip").await.unwrap_err();
    assert!(matches!(error, PrintError::File { .. }), "{error:?}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
}
