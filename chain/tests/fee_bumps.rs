//! Fee bumps on anvil: a transaction that waits in the pool is sent again with the same nonce
//! and at least 12.5% higher fees; one dropped by a base-fee rise is sent again at the new
//! price; one a caller gave up on is replaced by the next call's, not queued behind.

use alloy_primitives::{Address, Bytes, U256, address};
use alloy_provider::Provider;
use alloy_signer_local::PrivateKeySigner;
use hoplite_chain::backend::Backend;
use hoplite_chain::rpc::{FeePolicy, GWEI, RpcBackend};
use hoplite_chain::testing::{Anvil, DEPLOYER, DEPLOYER_KEY};
use serde_json::Value;
use std::time::Duration;

const PAYEE: Address = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
const OTHER: Address = address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
const BUMP_AFTER: Duration = Duration::from_millis(400);

async fn backend(anvil: &Anvil) -> RpcBackend {
    let signer = PrivateKeySigner::from_bytes(&DEPLOYER_KEY).expect("valid key");
    RpcBackend::connect(anvil.url(), signer)
        .await
        .expect("anvil answers")
        .with_fee_policy(FeePolicy {
            bump_after: BUMP_AFTER,
            max_fee_per_gas: 1_000 * GWEI,
        })
}

/// A version of a transaction as anvil holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Version {
    hash: String,
    to: Address,
    nonce: u64,
    max_fee: u128,
    priority_fee: u128,
}

impl Version {
    fn from_json(tx: &Value) -> Self {
        let quantity = |field: &str| {
            let hex = tx[field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} in {tx}"));
            u128::from_str_radix(hex.trim_start_matches("0x"), 16).expect("a quantity")
        };
        Self {
            hash: tx["hash"].as_str().expect("hash").to_owned(),
            to: tx["to"].as_str().expect("to").parse().expect("an address"),
            nonce: quantity("nonce") as u64,
            max_fee: quantity("maxFeePerGas"),
            priority_fee: quantity("maxPriorityFeePerGas"),
        }
    }

    /// Pays at least 12.5% more than `earlier` on both fees.
    fn outbids(&self, earlier: &Version) -> bool {
        self.max_fee * 8 >= earlier.max_fee * 9 && self.priority_fee * 8 >= earlier.priority_fee * 9
    }
}

async fn rpc(chain: &RpcBackend, method: &'static str, params: Value) -> Value {
    chain
        .provider()
        .raw_request::<_, Value>(method.into(), params)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// The deployer's transactions in anvil's pool.
async fn pool(chain: &RpcBackend) -> Vec<Version> {
    let content = rpc(chain, "txpool_content", Value::Array(vec![])).await;
    let ours = &content["pending"][format!("{DEPLOYER:#x}")];
    ours.as_object()
        .map(|by_nonce| by_nonce.values().map(Version::from_json).collect())
        .unwrap_or_default()
}

/// Waits (bounded) until the pool holds one version of ours other than `not`.
async fn next_version(chain: &RpcBackend, not: Option<&Version>) -> Version {
    for _ in 0..100 {
        let versions = pool(chain).await;
        if let [only] = versions.as_slice()
            && Some(only) != not
        {
            return only.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no new version in the pool after 5 s (it holds {:?})",
        pool(chain).await
    );
}

/// The versions mined in block `number`.
async fn mined_in(chain: &RpcBackend, number: u64) -> Vec<Version> {
    let block = rpc(
        chain,
        "eth_getBlockByNumber",
        serde_json::json!([format!("{number:#x}"), true]),
    )
    .await;
    block["transactions"]
        .as_array()
        .expect("a block with transactions")
        .iter()
        .map(Version::from_json)
        .collect()
}

async fn mine(chain: &RpcBackend) {
    rpc(chain, "evm_mine", Value::Array(vec![])).await;
}

#[tokio::test]
async fn a_waiting_transaction_is_replaced_with_the_same_nonce_and_higher_fees() {
    let anvil = Anvil::mining_on_request();
    let watcher = backend(&anvil).await;
    let mut sender = backend(&anvil).await;
    let send = tokio::spawn(async move { sender.transact(PAYEE, Bytes::new()).await });

    let first = next_version(&watcher, None).await;
    let second = next_version(&watcher, Some(&first)).await;
    assert_eq!((first.nonce, second.nonce), (0, 0), "{first:?} {second:?}");
    assert!(second.outbids(&first), "{second:?} after {first:?}");

    mine(&watcher).await;
    let receipt = send.await.expect("no panic").expect("mined");
    assert_eq!(receipt.block, 1);
    let mined = mined_in(&watcher, 1).await;
    assert_eq!(mined.len(), 1, "one version mined: {mined:?}");
    assert!(
        mined[0].outbids(&first),
        "the newer version was mined: {mined:?}"
    );
}

#[tokio::test]
async fn a_transaction_dropped_by_a_base_fee_rise_is_sent_again_at_the_new_price() {
    let anvil = Anvil::mining_on_request();
    let watcher = backend(&anvil).await;
    let mut sender = backend(&anvil).await;
    let send = tokio::spawn(async move { sender.transact(PAYEE, Bytes::new()).await });

    let first = next_version(&watcher, None).await;
    let base_fee = first.max_fee * 10;
    rpc(
        &watcher,
        "anvil_setNextBlockBaseFeePerGas",
        serde_json::json!([U256::from(base_fee)]),
    )
    .await;
    mine(&watcher).await;
    assert!(
        mined_in(&watcher, 1).await.is_empty(),
        "it can't pay block 1's base fee"
    );

    // Block 2's base fee is block 1's less at most 12.5% (block 1 was empty).
    let again = next_version(&watcher, Some(&first)).await;
    assert_eq!(again.nonce, 0);
    assert!(
        again.max_fee >= base_fee * 7 / 8,
        "{again:?} under {base_fee}"
    );
    mine(&watcher).await;
    let receipt = send.await.expect("no panic").expect("mined");
    assert_eq!(receipt.block, 2);
    assert_eq!(mined_in(&watcher, 2).await.len(), 1);
}

#[tokio::test]
async fn the_next_call_replaces_a_transaction_its_caller_gave_up_on() {
    let anvil = Anvil::mining_on_request();
    let watcher = backend(&anvil).await;
    let mut sender = backend(&anvil).await;
    let abandoned =
        tokio::time::timeout(BUMP_AFTER / 2, sender.transact(PAYEE, Bytes::new())).await;
    assert!(abandoned.is_err(), "nothing is mined without a block");
    let left = next_version(&watcher, None).await;
    assert_eq!(left.to, PAYEE);

    let send = tokio::spawn(async move { sender.transact(OTHER, Bytes::new()).await });
    let replacement = next_version(&watcher, Some(&left)).await;
    assert_eq!(
        (replacement.to, replacement.nonce),
        (OTHER, 0),
        "{replacement:?}"
    );
    assert!(replacement.outbids(&left), "{replacement:?} after {left:?}");
    mine(&watcher).await;
    let receipt = send.await.expect("no panic").expect("mined");
    assert_eq!(receipt.block, 1);
    let mined = mined_in(&watcher, 1).await;
    assert_eq!(mined.len(), 1, "{mined:?}");
    assert_eq!(mined[0].to, OTHER);
}
