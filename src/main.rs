//! The `regauth` command line: parses arguments and hands over to the
//! library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use regauth::keys::Algorithm;

/// Token server and nginx auth_request sidecar for private container registries.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--config PATH`, as every command that reads the running config takes it.
#[derive(Args)]
struct ConfigFile {
    /// The JSON configuration file.
    #[arg(
        long,
        short,
        default_value = "config/regauth.json",
        env = "REGAUTH_CONFIG"
    )]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the token endpoint, /auth, /healthz and /metrics.
    Serve {
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Print the bcrypt hash of a password read from stdin or a prompt.
    HashPassword {
        /// bcrypt cost factor (4-31).
        #[arg(long, default_value_t = 10)]
        cost: u32,
    },
    /// Create a signing key and a self-signed certificate for the registry.
    Keygen {
        /// ES256 or RS256 (PS256 keys are RSA keys too).
        #[arg(long, value_enum, default_value_t = Algorithm::Es256, ignore_case = true)]
        algorithm: Algorithm,
        /// Where to write the private key (mode 0600).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the certificate.
        #[arg(long)]
        cert: PathBuf,
        /// The certificate's common name.
        #[arg(long, default_value = "regauth")]
        cn: String,
    },
    /// Validate a configuration file and print a summary.
    CheckConfig {
        /// The JSON configuration file.
        config: PathBuf,
    },
    /// Create, list and revoke scoped API tokens.
    Token {
        #[command(subcommand)]
        command: regauth::token_commands::TokenCommand,
    },
    /// Print the JWK Set of every key whose tokens regauth accepts (registry 3's
    /// auth.token.jwks).
    Jwks {
        #[command(flatten)]
        config: ConfigFile,
        /// Read the signing key here instead of at token.private_key (e.g.
        /// /etc/regauth/keys/token.key when the config names systemd's credential copy).
        #[arg(long)]
        private_key: Option<PathBuf>,
    },
    /// Show which ACL rules decide for an account, why the others are skipped, and the
    /// resulting grant.
    Explain {
        #[command(flatten)]
        config: ConfigFile,
        /// The account asking; leave out for an anonymous caller.
        #[arg(long)]
        account: Option<String>,
        /// A group of the account (repeatable); default: the configured user's groups.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A registry request as /auth sees it, e.g. 'PUT /v2/app/manifests/v1'.
        #[arg(long)]
        request: Option<String>,
        /// Scopes as requested from /token, e.g. repository:app/web:pull,push.
        scopes: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => regauth::app::serve(&config.config),
        Command::HashPassword { cost } => regauth::commands::hash_password(cost),
        Command::Keygen {
            algorithm,
            key,
            cert,
            cn,
        } => regauth::commands::keygen(algorithm, &key, &cert, &cn),
        Command::CheckConfig { config } => regauth::commands::check_config(&config),
        Command::Token { command } => regauth::token_commands::run(command),
        Command::Jwks {
            config,
            private_key,
        } => regauth::commands::jwks(&config.config, private_key.as_deref()),
        Command::Explain {
            config,
            account,
            groups,
            request,
            scopes,
        } => regauth::explain::run(
            &config.config,
            &regauth::explain::Question {
                account: account.as_deref(),
                groups: &groups,
                scopes: &scopes,
                request: request.as_deref(),
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("regauth: {error:#}");
            ExitCode::FAILURE
        }
    }
}
