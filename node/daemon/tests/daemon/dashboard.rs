//! The dashboard in a real browser: headless Chromium (Debian's, installed by
//! `scripts/install-tools.sh chromium`), driven over the DevTools protocol, loads the page
//! two daemons serve with the token in the URL's fragment. The test reads what the page
//! shows, makes an invoice with the payee's form, pays it with the payer's, and sees the
//! payment arrive in the payee's live events, channels and payments; then saves a screenshot.

use crate::common::{Daemon, Localnet};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const DEPOSIT: u64 = 10_000;

/// A headless Chromium and a DevTools connection to it.
struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Browser {
    fn launch(profile: &Path) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let installed = Command::new(root.join("scripts/install-tools.sh"))
            .arg("chromium")
            .status()
            .expect("the install script runs");
        assert!(
            installed.success(),
            "scripts/install-tools.sh chromium failed"
        );
        let mut child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
            ])
            .args([
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1400,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let url = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("DevTools listening on ").map(str::to_owned))
            .expect("chromium prints its DevTools address");
        std::thread::spawn(move || lines.for_each(drop));
        let (socket, _) = tungstenite::connect(url.trim()).expect("DevTools answers");
        Self {
            child,
            socket,
            next: 0,
        }
    }

    /// One DevTools call (in `session`, a page's, if given); its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut request = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            request["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(request.to_string()))
            .expect("DevTools takes the call");
        loop {
            let Message::Text(text) = self.socket.read().expect("DevTools answers") else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).expect("JSON");
            if answer["id"] == json!(id) {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// A new tab at `url`; its session.
    fn open(&mut self, url: &str) -> String {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        self.call(Some(&session), "Page.navigate", json!({"url": url}));
        session
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, session: &str, expression: &str) -> Value {
        let result = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    fn wait_for(&mut self, session: &str, expression: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.eval(session, expression) != json!(true) {
            let body = self.eval(session, "document.body.innerText");
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dashboard(daemon: &Daemon, token: &str) -> String {
    format!("{}/#token={token}", daemon.api)
}

/// Standard base64, as DevTools sends screenshots.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|chunk| {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
            let bytes = n.to_be_bytes();
            bytes[1..chunk.len()].to_vec()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_node_and_pays_through_its_forms() {
    let mut net = Localnet::start("dashboard", 2).await;
    net.open_line(DEPOSIT).await;
    let profile = net.dir.join("chromium");
    let mut browser = Browser::launch(&profile);
    let (payer, payee) = (&net.daemons[0], &net.daemons[1]);

    // A wrong token: the page asks for one.
    let wrong = browser.open(&dashboard(payee, &"0".repeat(64)));
    browser.wait_for(
        &wrong,
        "!document.getElementById('login').hidden",
        "the token form",
    );

    let theirs = browser.open(&dashboard(payee, &payee.token()));
    let address = format!("{:#x}", payee.address).to_lowercase();
    browser.wait_for(
        &theirs,
        &format!("document.getElementById('address').textContent.toLowerCase() === '{address}'"),
        "the payee's address",
    );
    assert_eq!(
        browser.eval(&theirs, "location.hash"),
        json!(""),
        "the token left the URL"
    );
    browser.wait_for(
        &theirs,
        "document.querySelectorAll('#channels tr[data-channel]').length === 1",
        "its channel",
    );
    // The payee deposited nothing: the bar is all the partner's.
    let width = browser.eval(
        &theirs,
        "document.querySelector('#channels .bar .theirs').style.width",
    );
    assert_eq!(width, json!("100%"));

    browser.eval(
        &theirs,
        "document.getElementById('invoice-amount').value = '420'; \
         document.querySelector('#invoice-form button').click(); true",
    );
    browser.wait_for(
        &theirs,
        "document.getElementById('invoice-text').value.startsWith('hoplite1')",
        "the invoice",
    );
    let invoice = browser.eval(&theirs, "document.getElementById('invoice-text').value");
    let invoice = invoice.as_str().unwrap().to_owned();

    let ours = browser.open(&dashboard(payer, &payer.token()));
    browser.wait_for(
        &ours,
        "document.querySelectorAll('#channels tr[data-channel]').length === 1",
        "the payer's channel",
    );
    browser.eval(
        &ours,
        &format!(
            "document.getElementById('pay-invoice').value = '{invoice}'; \
             document.querySelector('#pay-form button').click(); true"
        ),
    );
    browser.wait_for(
        &ours,
        "document.getElementById('pay-status').textContent.startsWith('paid 420')",
        "the payment made",
    );
    let left = DEPOSIT - 420;
    browser.wait_for(
        &ours,
        &format!("document.querySelector('#channels .ours-amount').textContent === '{left}'"),
        "the payer's new balance",
    );
    browser.wait_for(
        &theirs,
        "[...document.querySelectorAll('#events li')].some(li => \
         li.dataset.type === 'payment_received' && li.textContent.includes('amount=420'))",
        "the payment in the live events",
    );
    browser.wait_for(
        &theirs,
        "document.querySelector('#payments tr td:nth-child(3)')?.textContent === 'succeeded' && \
         document.querySelector('#payments tr td:nth-child(4)').textContent === '420'",
        "the payment in the payee's list",
    );
    browser.wait_for(
        &theirs,
        "document.querySelector('#channels .ours-amount').textContent === '420'",
        "the payee's new balance",
    );

    let shot = browser.call(
        Some(&ours),
        "Page.captureScreenshot",
        json!({"format": "png"}),
    );
    let png = base64(shot["data"].as_str().unwrap());
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a screenshot"
    );
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&file, png).unwrap();
    drop(browser);
    for daemon in &mut net.daemons {
        daemon.stop();
    }
}
