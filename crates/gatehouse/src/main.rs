//! `gatehouse`: serve, migrate, manage users, workspaces, members and keys, check
//! configuration.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gatehouse::config::{self, Config};
use gatehouse::{server, telemetry};
use gatehouse_core::RequestMeta;
use gatehouse_core::admin::CreateUser;
use gatehouse_core::tenancy::AddMember;
use gatehouse_domain::Secret;
use gatehouse_domain::model::AccountStatus;
use gatehouse_domain::ports::SystemClock;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Self-hosted authentication and identity service"
)]
struct Cli {
    /// TOML config file (default: ./gatehouse.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Listen address, overriding `bind`.
        #[arg(long)]
        bind: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Manage workspaces.
    Workspace {
        #[command(subcommand)]
        action: WorkspaceAction,
    },
    /// Manage workspace memberships.
    Member {
        #[command(subcommand)]
        action: MemberAction,
    },
    /// Manage role grants.
    Role {
        #[command(subcommand)]
        action: RoleAction,
    },
    /// Manage token-signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Check configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an account. The password is read from standard input with --password-stdin.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// Give the account the `admin` role.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password_stdin: bool,
        /// Require a new password at first sign-in.
        #[arg(long)]
        must_change_password: bool,
    },
    /// Disable an account (by id, email or username) and revoke its sessions.
    Disable { user: String },
    /// Enable an account.
    Enable { user: String },
    /// Lift a lockout (needs the shared cache the servers use).
    Unlock { user: String },
    /// Set a password, read from standard input; revokes every session.
    SetPassword { user: String },
}

#[derive(Subcommand)]
enum WorkspaceAction {
    /// Create a workspace.
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
    /// Disable a workspace (by slug): its members can no longer sign in to it.
    Disable { slug: String },
    /// Enable a workspace (by slug).
    Enable { slug: String },
}

#[derive(Subcommand)]
enum MemberAction {
    /// Make an account a member of a workspace.
    Add {
        /// Workspace slug.
        #[arg(long)]
        workspace: String,
        /// Account id, email or username.
        #[arg(long)]
        user: String,
        /// Branch code (repeatable).
        #[arg(long = "branch")]
        branches: Vec<String>,
        /// Workspace-wide role code (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
}

#[derive(Subcommand)]
enum RoleAction {
    /// Grant a role to a member, workspace-wide (or in one branch with --branch).
    Grant {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        role: String,
        /// Branch code, to grant the role in that branch only.
        #[arg(long)]
        branch: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// List signing keys.
    List,
    /// Make a new signing key current; old tokens stay valid until they expire.
    Rotate,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate the configuration and print it with secrets redacted.
    Check,
}

fn read_password() -> anyhow::Result<Secret> {
    let mut s = String::new();
    std::io::stdin().take(8192).read_to_string(&mut s)?;
    let pw = s.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(!pw.is_empty(), "no password on standard input");
    Ok(Secret::new(pw))
}

#[allow(clippy::print_stdout)]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut cfg: Config =
        config::load(cli.config.as_deref()).context("cannot load the configuration")?;
    if let Command::Serve { bind: Some(b) } = &cli.command {
        cfg.bind = b.clone();
        cfg.validate().context("--bind")?;
    }
    telemetry::init(&cfg.log);
    for var in config::unknown_env_vars() {
        tracing::warn!(variable = %var, "unknown GATEHOUSE_ environment variable ignored");
    }
    let meta = RequestMeta {
        request_id: Some("cli".into()),
        ..RequestMeta::default()
    };
    match cli.command {
        Command::Serve { .. } => server::serve(cfg).await.context("gatehouse serve"),
        Command::Migrate => {
            server::service(&cfg, Arc::new(SystemClock))
                .await
                .context("cannot migrate")?;
            println!("migrations applied to {}", cfg.database_url_redacted());
            Ok(())
        }
        Command::Config {
            action: ConfigAction::Check,
        } => {
            println!("{}", toml_like(&cfg)?);
            println!("configuration OK");
            Ok(())
        }
        Command::Keys { action } => {
            let svc = server::service(&cfg, Arc::new(SystemClock))
                .await
                .context("cannot open the key store")?;
            if let KeysAction::Rotate = action {
                // Sealed with secrets.encryption_key; other instances load it on the first
                // token that names it, or at their next periodic reload.
                let kid = svc
                    .keys
                    .rotate(svc.store.as_ref(), svc.now())
                    .await
                    .context("cannot rotate the signing key")?;
                println!(
                    "new signing key {kid}; instances pick it up within {} s",
                    cfg.jwt.key_refresh_seconds
                );
            }
            let keys = svc
                .store
                .signing_keys()
                .await
                .context("cannot list the signing keys")?;
            for k in keys {
                let state = if k.retired_at.is_some() {
                    "retired"
                } else {
                    "current"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.kid,
                    k.alg,
                    k.created_at.to_rfc3339(),
                    state,
                    gatehouse_core::jwt::private_key_storage(&k)
                );
            }
            Ok(())
        }
        Command::Workspace { action } => {
            let svc = server::service(&cfg, Arc::new(SystemClock)).await?;
            match action {
                WorkspaceAction::Create { slug, name } => {
                    let w = svc
                        .create_workspace(None, &slug, &name, &meta)
                        .await
                        .map_err(describe)?;
                    println!("created workspace {} ({})", w.slug, w.id);
                }
                WorkspaceAction::Disable { slug } => {
                    let w = svc.workspace_by_slug(&slug).await.map_err(describe)?;
                    svc.set_workspace_status(None, w.id, AccountStatus::Disabled, &meta)
                        .await
                        .map_err(describe)?;
                    println!("disabled workspace {}", w.slug);
                }
                WorkspaceAction::Enable { slug } => {
                    let w = svc.workspace_by_slug(&slug).await.map_err(describe)?;
                    svc.set_workspace_status(None, w.id, AccountStatus::Active, &meta)
                        .await
                        .map_err(describe)?;
                    println!("enabled workspace {}", w.slug);
                }
            }
            Ok(())
        }
        Command::Member {
            action:
                MemberAction::Add {
                    workspace,
                    user,
                    branches,
                    roles,
                },
        } => {
            let svc = server::service(&cfg, Arc::new(SystemClock)).await?;
            let w = svc.workspace_by_slug(&workspace).await.map_err(describe)?;
            let a = svc.find_user(&user).await.map_err(describe)?;
            let mut branch_ids = Vec::new();
            for code in &branches {
                let b = svc
                    .store
                    .branch_by_code(w.id, code)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no branch {code} in {}", w.slug))?;
                branch_ids.push(b.id);
            }
            let input = AddMember {
                account_id: a.id,
                branch_ids,
                roles,
            };
            let m = svc
                .add_member(None, w.id, input, &meta)
                .await
                .map_err(describe)?;
            println!("added {} to {} as member {}", a.email, w.slug, m.id);
            Ok(())
        }
        Command::Role {
            action:
                RoleAction::Grant {
                    workspace,
                    user,
                    role,
                    branch,
                },
        } => {
            let svc = server::service(&cfg, Arc::new(SystemClock)).await?;
            let w = svc.workspace_by_slug(&workspace).await.map_err(describe)?;
            let a = svc.find_user(&user).await.map_err(describe)?;
            let m = svc.member_of(a.id, w.id).await.map_err(describe)?;
            let branch_id = match &branch {
                Some(code) => Some(
                    svc.store
                        .branch_by_code(w.id, code)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no branch {code} in {}", w.slug))?
                        .id,
                ),
                None => None,
            };
            svc.change_member_roles(
                None,
                &m,
                std::slice::from_ref(&role),
                branch_id,
                true,
                &meta,
            )
            .await
            .map_err(describe)?;
            println!("granted {role} to {} in {}", a.email, w.slug);
            Ok(())
        }
        Command::User { action } => {
            let svc = server::service(&cfg, Arc::new(SystemClock)).await?;
            match action {
                UserAction::Create {
                    email,
                    username,
                    display_name,
                    admin,
                    password_stdin,
                    must_change_password,
                } => {
                    let password = if password_stdin {
                        Some(read_password()?)
                    } else {
                        None
                    };
                    let input = CreateUser {
                        email,
                        username,
                        display_name,
                        password,
                        must_change_password: Some(must_change_password),
                        roles: if admin {
                            vec!["admin".into()]
                        } else {
                            vec!["user".into()]
                        },
                    };
                    let a = svc
                        .create_user(None, input, &meta)
                        .await
                        .map_err(describe)?;
                    println!("created {} ({})", a.email, a.id);
                }
                UserAction::Disable { user } => {
                    let a = svc.find_user(&user).await.map_err(describe)?;
                    svc.set_user_status(None, a.id, AccountStatus::Disabled, &meta)
                        .await
                        .map_err(describe)?;
                    println!("disabled {}", a.email);
                }
                UserAction::Enable { user } => {
                    let a = svc.find_user(&user).await.map_err(describe)?;
                    svc.set_user_status(None, a.id, AccountStatus::Active, &meta)
                        .await
                        .map_err(describe)?;
                    println!("enabled {}", a.email);
                }
                UserAction::Unlock { user } => {
                    let a = svc.find_user(&user).await.map_err(describe)?;
                    svc.unlock_user(None, a.id, &meta).await.map_err(describe)?;
                    if svc.cache.backend() == "memory" {
                        println!(
                            "note: the memory cache is per process; a running server keeps its own lockouts (use the admin API)"
                        );
                    }
                    println!("unlocked {}", a.email);
                }
                UserAction::SetPassword { user } => {
                    let a = svc.find_user(&user).await.map_err(describe)?;
                    svc.set_user_password(None, a.id, &read_password()?, &meta)
                        .await
                        .map_err(describe)?;
                    println!("password set for {}; its sessions were revoked", a.email);
                }
            }
            Ok(())
        }
    }
}

/// Field errors in CLI form.
fn describe(e: gatehouse_domain::AppError) -> anyhow::Error {
    let fields: Vec<String> = e
        .fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.code))
        .collect();
    if fields.is_empty() {
        anyhow::anyhow!("{}", e.code.message(gatehouse_domain::Locale::En))
    } else {
        anyhow::anyhow!(
            "{} ({})",
            e.code.message(gatehouse_domain::Locale::En),
            fields.join(", ")
        )
    }
}

fn toml_like(cfg: &Config) -> anyhow::Result<String> {
    let mut redacted = cfg.clone();
    redacted.database.url = cfg.database_url_redacted();
    redacted.cache.url = config::redact_url(&cfg.cache.url);
    Ok(serde_json::to_string_pretty(&redacted)?)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}
