//! Deploying the contracts from their committed bytecode.

use crate::backend::{Backend, ChainError};
use crate::contracts::{SecretRegistry, TestToken, TokenNetwork};
use alloy_primitives::{Address, Bytes};
use alloy_sol_types::SolConstructor;

/// Where the contracts of one token network live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The ERC-20 token.
    pub token: Address,
    /// The SecretRegistry.
    pub secret_registry: Address,
    /// The TokenNetwork of `token`.
    pub token_network: Address,
    /// The block the TokenNetwork was deployed in: no event of it is older.
    pub block: u64,
}

impl Deployment {
    /// Deploys a mintable [`TestToken`], a [`SecretRegistry`] and a [`TokenNetwork`] for that
    /// token from `backend`'s account: a local network in three transactions.
    pub async fn with_test_token(backend: &mut impl Backend) -> Result<Self, ChainError> {
        let args = TestToken::constructorCall {
            name_: "Hoplite Test Token".into(),
            symbol_: "HTT".into(),
        };
        let (token, _) = deploy(backend, &TestToken::BYTECODE, &args.abi_encode()).await?;
        let (secret_registry, _) = deploy(backend, &SecretRegistry::BYTECODE, &[]).await?;
        Self::token_network(backend, token, secret_registry).await
    }

    /// Deploys a [`TokenNetwork`] for an existing `token` and `secret_registry`.
    pub async fn token_network(
        backend: &mut impl Backend,
        token: Address,
        secret_registry: Address,
    ) -> Result<Self, ChainError> {
        let args = TokenNetwork::constructorCall {
            token_: token,
            secretRegistry_: secret_registry,
        };
        let (token_network, block) =
            deploy(backend, &TokenNetwork::BYTECODE, &args.abi_encode()).await?;
        Ok(Self {
            token,
            secret_registry,
            token_network,
            block,
        })
    }
}

/// Deploys creation bytecode with ABI-encoded constructor arguments; returns the address and the
/// block.
async fn deploy(
    backend: &mut impl Backend,
    bytecode: &Bytes,
    args: &[u8],
) -> Result<(Address, u64), ChainError> {
    let receipt = backend
        .deploy([bytecode.as_ref(), args].concat().into())
        .await?;
    let address = receipt
        .contract_address
        .ok_or_else(|| ChainError::Unexpected("deployment without an address".into()))?;
    Ok((address, receipt.block))
}
