//! Authorization: the one list of permissions, what a caller holds in a scope, and the
//! check every admin use case goes through. Deny by default: only a held permission (or
//! the wildcard) allows, and a refusal names the permission that was missing.

use crate::service::{Principal, Service};
use gatehouse_domain::model::{Account, Status};
use gatehouse_domain::{AppError, Code, FieldError, Id};
use serde::{Serialize, Serializer};

/// Declares [`Permission`] from one list of variants and wire names, so the enum, its
/// names and [`Permission::EVERY`] cannot drift apart.
macro_rules! permissions {
    ($($variant:ident = $name:literal,)*) => {
        /// Every permission a role can hold besides the wildcard. The wire form (`as_str`)
        /// is what roles store and what `PERMISSION_REQUIRED` names.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Permission {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl Permission {
            /// Every permission, in declaration order.
            pub const EVERY: &'static [Permission] = &[$(Self::$variant),*];

            /// The name roles hold, e.g. `users:read`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

permissions! {
    UsersRead = "users:read",
    UsersWrite = "users:write",
    SessionsRead = "sessions:read",
    AuditRead = "audit:read",
    SettingsRead = "settings:read",
    SettingsWrite = "settings:write",
    WorkspacesRead = "workspaces:read",
    WorkspacesWrite = "workspaces:write",
    BranchesRead = "branches:read",
    BranchesWrite = "branches:write",
    MembersRead = "members:read",
    MembersWrite = "members:write",
    RolesRead = "roles:read",
    RolesWrite = "roles:write",
    ApiKeysRead = "api-keys:read",
    ApiKeysWrite = "api-keys:write",
    TokensIntrospect = "tokens:introspect",
}

// A `PermissionSet` keeps one bit per permission in a `u32`.
const _: () = assert!(Permission::EVERY.len() <= 32);

impl Permission {
    /// The permission named `name` exactly; `None` for anything else (including `*`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::EVERY.iter().copied().find(|p| p.as_str() == name)
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// One entry of a role's permission list: the wildcard or a single permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// `*`: every permission, including ones added later.
    All,
    One(Permission),
}

impl Grant {
    /// The wildcard's wire form.
    pub const WILDCARD: &'static str = "*";

    /// The grant named `name` exactly; `None` for an unknown name.
    pub fn parse(name: &str) -> Option<Self> {
        if name == Self::WILDCARD {
            Some(Self::All)
        } else {
            Permission::parse(name).map(Self::One)
        }
    }
}

/// What a caller holds in one scope. Empty by default (deny by default); serializes as
/// the sorted wire names, `*` first when held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PermissionSet {
    all: bool,
    bits: u32,
}

impl PermissionSet {
    /// Holds nothing.
    pub const NONE: Self = Self {
        all: false,
        bits: 0,
    };

    /// Holds the wildcard.
    pub const ALL: Self = Self { all: true, bits: 0 };

    /// The union of the named grants. Unknown names grant nothing: a stored role with a
    /// name this build does not know must not widen anyone's reach.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        names
            .into_iter()
            .filter_map(Grant::parse)
            .fold(Self::NONE, |mut set, g| {
                set.add(g);
                set
            })
    }

    fn add(&mut self, grant: Grant) {
        match grant {
            Grant::All => self.all = true,
            Grant::One(p) => self.bits |= p.bit(),
        }
    }

    /// True if `permission` is held, directly or through the wildcard.
    pub fn allows(&self, permission: Permission) -> bool {
        self.all || self.bits & permission.bit() != 0
    }

    /// `Ok` if `permission` is held; `PERMISSION_REQUIRED` naming it otherwise.
    pub fn require(&self, permission: Permission) -> Result<(), AppError> {
        if self.allows(permission) {
            Ok(())
        } else {
            Err(permission_required(permission))
        }
    }

    /// Whether a caller holding `self` may hand `wanted` to someone else: every
    /// permission in it must be held here, and the wildcard is never handed on (only an
    /// instance admin grants `*`).
    pub fn may_delegate(&self, wanted: &PermissionSet) -> Result<(), AppError> {
        if wanted.all {
            return Err(AppError {
                fields: vec![FieldError::new("permission", Grant::WILDCARD)],
                ..AppError::new(Code::PERMISSION_REQUIRED)
            });
        }
        match Permission::EVERY
            .iter()
            .find(|p| wanted.allows(**p) && !self.allows(**p))
        {
            Some(p) => Err(permission_required(*p)),
            None => Ok(()),
        }
    }

    /// What both sets hold.
    pub fn intersect(&self, other: &PermissionSet) -> PermissionSet {
        match (self.all, other.all) {
            (true, true) => Self::ALL,
            (true, false) => *other,
            (false, true) => *self,
            (false, false) => Self {
                all: false,
                bits: self.bits & other.bits,
            },
        }
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        !self.all && self.bits == 0
    }

    /// The held grants' wire names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Permission::EVERY
            .iter()
            .copied()
            .filter(|p| self.bits & p.bit() != 0)
            .map(Permission::as_str)
            .collect();
        if self.all {
            names.push(Grant::WILDCARD);
        }
        names.sort_unstable();
        names
    }
}

impl Serialize for PermissionSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

/// Where a permission is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Across the instance: only global roles count (today the account role `admin`).
    Instance,
    /// Inside one workspace: global roles, or an active membership of that active
    /// workspace and the roles it holds there.
    Workspace(Id),
}

/// `PERMISSION_REQUIRED` naming the missing permission in the field errors.
pub fn permission_required(permission: Permission) -> AppError {
    AppError {
        fields: vec![FieldError::new("permission", permission.as_str())],
        ..AppError::new(Code::PERMISSION_REQUIRED)
    }
}

impl Service {
    /// The caller's account and effective permissions in `scope`. The account role `admin`
    /// holds everything everywhere; otherwise only an active member of an active workspace
    /// holds its roles' permissions there (plus those of its current branch).
    pub async fn permissions_in(
        &self,
        p: &Principal,
        scope: Scope,
    ) -> Result<(Account, PermissionSet), AppError> {
        let account = self.me(p).await?;
        if account.has_role("admin") {
            return Ok((account, p.cap(PermissionSet::ALL)));
        }
        let Scope::Workspace(ws) = scope else {
            return Ok((account, PermissionSet::NONE));
        };
        // A credential bound to a workspace acts in that workspace only.
        if p.token.is_some() && p.workspace_id.is_some_and(|bound| bound != ws) {
            return Ok((account, PermissionSet::NONE));
        }
        let usable = self
            .store
            .workspace_by_id(ws)
            .await?
            .filter(|w| w.status == Status::Active);
        let member = match usable {
            Some(_) => self
                .store
                .member_of(account.id, ws)
                .await?
                .filter(|m| m.status == Status::Active),
            None => None,
        };
        let Some(member) = member else {
            return Ok((account, PermissionSet::NONE));
        };
        let branch = p.branch_id.filter(|_| p.workspace_id == Some(ws));
        let roles = self.store.member_roles(member.id, branch).await?;
        let held = PermissionSet::from_names(
            roles
                .iter()
                .flat_map(|r| r.permissions.iter().map(String::as_str)),
        );
        Ok((account, p.cap(held)))
    }

    /// `Ok` if the caller may hand the permissions in `wanted` to others in `workspace`: an
    /// instance admin may hand anything; a delegated (workspace) admin only what they hold
    /// there themselves, and never the wildcard. Otherwise `PERMISSION_REQUIRED` naming the
    /// first permission they lack.
    pub async fn require_delegable(
        &self,
        p: &Principal,
        workspace: Id,
        wanted: &PermissionSet,
    ) -> Result<(), AppError> {
        let (account, held) = self.permissions_in(p, Scope::Workspace(workspace)).await?;
        // A token's scopes cap what it may hand on, the instance admin's too.
        if account.has_role("admin") && p.token.is_none() {
            return Ok(());
        }
        held.may_delegate(wanted)
    }

    /// The caller's account if it holds `permission` in `scope`; `PERMISSION_REQUIRED`
    /// naming the permission otherwise.
    pub async fn require_permission(
        &self,
        p: &Principal,
        permission: Permission,
        scope: Scope,
    ) -> Result<Account, AppError> {
        let (account, held) = self.permissions_in(p, scope).await?;
        held.require(permission)?;
        Ok(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_nothing_else_parses() {
        for &p in Permission::EVERY {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
            assert_eq!(Grant::parse(p.as_str()), Some(Grant::One(p)));
        }
        assert_eq!(Grant::parse("*"), Some(Grant::All));
        for bad in ["*", "", "users", "Users:Read", " users:read", "fly:high"] {
            assert_eq!(Permission::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Grant::parse("**"), None);
    }

    #[test]
    fn an_empty_set_denies_everything() {
        let none = PermissionSet::default();
        assert!(none.is_empty());
        assert!(Permission::EVERY.iter().all(|p| !none.allows(*p)));
    }

    #[test]
    fn the_wildcard_allows_everything() {
        let all = PermissionSet::from_names(["*"]);
        assert_eq!(all, PermissionSet::ALL);
        assert!(Permission::EVERY.iter().all(|p| all.allows(*p)));
        assert_eq!(all.names(), ["*"]);
    }

    #[test]
    fn only_named_permissions_are_held_and_unknown_names_grant_nothing() {
        let set = PermissionSet::from_names(["members:read", "fly:high", "members:read"]);
        assert!(set.allows(Permission::MembersRead));
        assert!(!set.allows(Permission::MembersWrite));
        assert_eq!(set.names(), ["members:read"]);
        assert!(PermissionSet::from_names(["fly:high", "ALL"]).is_empty());
    }

    #[test]
    fn a_refusal_names_the_missing_permission() {
        let set = PermissionSet::from_names(["users:read"]);
        assert!(set.require(Permission::UsersRead).is_ok());
        let Err(e) = set.require(Permission::UsersWrite) else {
            panic!("users:write was not held")
        };
        assert_eq!(e.code, Code::PERMISSION_REQUIRED);
        assert_eq!(e.fields, vec![FieldError::new("permission", "users:write")]);
    }

    #[test]
    fn an_intersection_holds_only_what_both_hold() {
        let a = PermissionSet::from_names(["users:read", "audit:read"]);
        let b = PermissionSet::from_names(["audit:read", "roles:read"]);
        assert_eq!(a.intersect(&b).names(), ["audit:read"]);
        assert_eq!(PermissionSet::ALL.intersect(&a), a);
        assert_eq!(a.intersect(&PermissionSet::ALL), a);
        assert_eq!(
            PermissionSet::ALL.intersect(&PermissionSet::ALL),
            PermissionSet::ALL
        );
        assert!(a.intersect(&PermissionSet::NONE).is_empty());
    }

    #[test]
    fn names_are_sorted_like_the_wire_lists() {
        let set = PermissionSet::from_names(["users:write", "*", "audit:read"]);
        assert_eq!(set.names(), ["*", "audit:read", "users:write"]);
        assert_eq!(
            serde_json::to_value(set).ok(),
            Some(serde_json::json!(["*", "audit:read", "users:write"]))
        );
    }
}
