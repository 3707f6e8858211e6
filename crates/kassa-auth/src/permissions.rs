//! Who may do what: one table, enforced by one function, [`authorize`], on every path (TMS,
//! API, back office, ISO gateway where it applies).

use std::fmt;

/// A role: per merchant (supervisor, operator, merchant owner and staff) or of the institution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Institution staff who onboard merchants, reset supervisor and refund passwords.
    InstitutionAdmin,
    /// Institution staff who review refunds and check corrections (maker-checker).
    InstitutionReviewer,
    /// The merchant's owner in the back office.
    MerchantOwner,
    /// The merchant's back-office staff: read-only.
    MerchantStaff,
    /// The merchant's supervisor (主管) at the terminal, operator `00`.
    Supervisor,
    /// A cashier (操作员) at the terminal.
    Operator,
}

/// Something a role may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Take payments.
    Sale,
    /// Void a sale of the open batch.
    Void,
    /// Refund an earlier sale.
    Refund,
    /// Close the day.
    Settle,
    /// Add, disable, unlock operators and reset their passwords (the institution: supervisors').
    ManageOperators,
    /// Unlock back-office users (the institution: any; a merchant owner: its merchant's staff).
    ManageUsers,
    /// Change the refund password, payment-code and terminal settings.
    ChangeSettings,
    /// Approve refunds above the review threshold.
    ReviewRefunds,
    /// Propose corrections (补登) and run reconciliation and payouts: the maker.
    PostCorrections,
    /// Approve or reject a correction someone else proposed: the checker.
    ReviewCorrections,
}

impl Role {
    /// Parses the stored role name.
    pub fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "institution_admin" => Role::InstitutionAdmin,
            "institution_reviewer" => Role::InstitutionReviewer,
            "merchant_owner" => Role::MerchantOwner,
            "merchant_staff" => Role::MerchantStaff,
            "supervisor" => Role::Supervisor,
            "operator" => Role::Operator,
            _ => return None,
        })
    }

    /// The stored role name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::InstitutionAdmin => "institution_admin",
            Role::InstitutionReviewer => "institution_reviewer",
            Role::MerchantOwner => "merchant_owner",
            Role::MerchantStaff => "merchant_staff",
            Role::Supervisor => "supervisor",
            Role::Operator => "operator",
        }
    }
}

impl Permission {
    /// Its name, for messages and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Sale => "sale",
            Permission::Void => "void",
            Permission::Refund => "refund",
            Permission::Settle => "settle",
            Permission::ManageOperators => "manage_operators",
            Permission::ManageUsers => "manage_users",
            Permission::ChangeSettings => "change_settings",
            Permission::ReviewRefunds => "review_refunds",
            Permission::PostCorrections => "post_corrections",
            Permission::ReviewCorrections => "review_corrections",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The permission table. Institution staff do not take payments; merchant staff only read.
/// Voids and refunds by operators still need the refund password (and, on host-enforced
/// terminals, a one-time approval): the permission says who may ask at all.
fn granted(role: Role) -> &'static [Permission] {
    use Permission::*;
    match role {
        Role::InstitutionAdmin => &[ManageOperators, ManageUsers, ChangeSettings, PostCorrections, ReviewCorrections],
        Role::InstitutionReviewer => &[ReviewRefunds, PostCorrections, ReviewCorrections],
        Role::MerchantOwner => &[Void, Refund, Settle, ManageOperators, ManageUsers, ChangeSettings],
        Role::MerchantStaff => &[],
        Role::Supervisor => &[Sale, Void, Refund, Settle, ManageOperators, ChangeSettings],
        Role::Operator => &[Sale, Void, Refund, Settle],
    }
}

/// A refusal by [`authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {} role may not {permission}", role.as_str())]
pub struct Denied {
    /// The role that asked.
    pub role: Role,
    /// What it asked for.
    pub permission: Permission,
}

/// THE check: whether `role` may do `permission`.
pub fn authorize(role: Role, permission: Permission) -> Result<(), Denied> {
    if granted(role).contains(&permission) {
        Ok(())
    } else {
        Err(Denied { role, permission })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 6] = [
        Role::InstitutionAdmin,
        Role::InstitutionReviewer,
        Role::MerchantOwner,
        Role::MerchantStaff,
        Role::Supervisor,
        Role::Operator,
    ];

    #[test]
    fn the_table() {
        use Permission::*;
        // role × (sale, void, refund, settle, manage_operators, manage_users, change_settings,
        //         review_refunds, post_corrections, review_corrections)
        let expected: [(Role, [bool; 10]); 6] = [
            (Role::InstitutionAdmin, [false, false, false, false, true, true, true, false, true, true]),
            (Role::InstitutionReviewer, [false, false, false, false, false, false, false, true, true, true]),
            (Role::MerchantOwner, [false, true, true, true, true, true, true, false, false, false]),
            (Role::MerchantStaff, [false; 10]),
            (Role::Supervisor, [true, true, true, true, true, false, true, false, false, false]),
            (Role::Operator, [true, true, true, true, false, false, false, false, false, false]),
        ];
        let permissions = [
            Sale,
            Void,
            Refund,
            Settle,
            ManageOperators,
            ManageUsers,
            ChangeSettings,
            ReviewRefunds,
            PostCorrections,
            ReviewCorrections,
        ];
        for (role, row) in expected {
            for (permission, allowed) in permissions.iter().zip(row) {
                assert_eq!(authorize(role, *permission).is_ok(), allowed, "{role:?} {permission:?}");
            }
        }
        assert_eq!(
            authorize(Role::Operator, ManageOperators).unwrap_err().to_string(),
            "the operator role may not manage_operators"
        );
    }

    #[test]
    fn role_names_round_trip() {
        for role in ROLES {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
