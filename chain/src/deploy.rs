//! Deploying the contracts from their committed bytecode.

use crate::contracts::{SecretRegistry, TestToken, TokenNetwork};
use crate::evm::{EvmError, InProcessEvm};
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
}

impl Deployment {
    /// Deploys a mintable [`TestToken`], a [`SecretRegistry`] and a [`TokenNetwork`] for that
    /// token, from `deployer`: a local network in three transactions.
    pub fn with_test_token(evm: &mut InProcessEvm, deployer: Address) -> Result<Self, EvmError> {
        let args = TestToken::constructorCall {
            name_: "Hoplite Test Token".into(),
            symbol_: "HTT".into(),
        };
        let (token, _) =
            evm.deploy(deployer, init_code(&TestToken::BYTECODE, args.abi_encode()))?;
        let (secret_registry, _) = evm.deploy(deployer, SecretRegistry::BYTECODE.clone())?;
        let args = TokenNetwork::constructorCall {
            token_: token,
            secretRegistry_: secret_registry,
        };
        let (token_network, _) = evm.deploy(
            deployer,
            init_code(&TokenNetwork::BYTECODE, args.abi_encode()),
        )?;
        Ok(Self {
            token,
            secret_registry,
            token_network,
        })
    }
}

/// Creation bytecode followed by the ABI-encoded constructor arguments.
fn init_code(bytecode: &Bytes, args: Vec<u8>) -> Bytes {
    [bytecode.as_ref(), &args].concat().into()
}
