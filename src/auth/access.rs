//! Who may do what: the role × action table, in one place.
//!
//! Each admin action has a scope per role: every prefecture, only the admin's own prefecture,
//! or none. Creating and deleting admins also obey a ceiling: nobody manages an admin whose role
//! is above their own.

use super::Role;
use crate::{
    error::{Error, Result},
    prefectures::PrefectureCode,
};

/// An operation of the health-authority dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    ViewAdmins,
    CreateAdmin,
    DeleteAdmin,
    ViewAuditLog,
    PublishNotice,
    WithdrawNotice,
    ViewNoticeHistory,
    IssueTokens,
    ViewTokens,
    RevokeToken,
    ViewStats,
}

impl Action {
    /// Every action, for tests that walk the whole table.
    pub const ALL: [Action; 11] = [
        Action::ViewAdmins,
        Action::CreateAdmin,
        Action::DeleteAdmin,
        Action::ViewAuditLog,
        Action::PublishNotice,
        Action::WithdrawNotice,
        Action::ViewNoticeHistory,
        Action::IssueTokens,
        Action::ViewTokens,
        Action::RevokeToken,
        Action::ViewStats,
    ];
}

/// Extent of the prefectures where a role may perform an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every prefecture, and national records without one.
    Everywhere,
    /// Only the admin's own prefecture.
    OwnPrefecture,
    /// Not at all.
    Nowhere,
}

/// The access table: the scope of each role for each action. Every admin action of the
/// dashboard is open to every admin role in its scope; the rows differ only where a role is
/// denied outright.
pub fn scope(role: Role, action: Action) -> Scope {
    match (role, action) {
        (Role::User, _) => Scope::Nowhere,
        (Role::SuperAdmin | Role::NationalAdmin, _) => Scope::Everywhere,
        (Role::PrefectureAdmin, _) => Scope::OwnPrefecture,
    }
}

/// The rank of a role for the ceiling on managing admins.
fn rank(role: Role) -> u8 {
    match role {
        Role::User => 0,
        Role::PrefectureAdmin => 1,
        Role::NationalAdmin => 2,
        Role::SuperAdmin => 3,
    }
}

/// The calling admin, as currently stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminCaller {
    pub id: uuid::Uuid,
    pub role: Role,
    pub prefecture: Option<PrefectureCode>,
}

/// The records of an action a caller may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    Everything,
    Prefecture(PrefectureCode),
}

impl Visibility {
    /// Returns whether a record of `prefecture` (or a national one, `None`) is visible.
    pub fn includes(self, prefecture: Option<PrefectureCode>) -> bool {
        match self {
            Visibility::Everything => true,
            Visibility::Prefecture(own) => prefecture == Some(own),
        }
    }
}

impl AdminCaller {
    /// Returns what the caller may see for `action`, or `FORBIDDEN`.
    pub fn visibility(&self, action: Action) -> Result<Visibility> {
        match (scope(self.role, action), self.prefecture) {
            (Scope::Everywhere, _) => Ok(Visibility::Everything),
            (Scope::OwnPrefecture, Some(own)) => Ok(Visibility::Prefecture(own)),
            _ => Err(forbidden(action, None)),
        }
    }

    /// Succeeds when the caller may perform `action` on `prefecture` (`None`: a national record).
    pub fn authorize(&self, action: Action, prefecture: Option<PrefectureCode>) -> Result<()> {
        if self.visibility(action)?.includes(prefecture) {
            Ok(())
        } else {
            Err(forbidden(action, prefecture))
        }
    }

    /// Succeeds when the caller may create or delete an admin with `role` in `prefecture`.
    pub fn authorize_admin_management(
        &self,
        action: Action,
        role: Role,
        prefecture: Option<PrefectureCode>,
    ) -> Result<()> {
        self.authorize(action, prefecture)?;
        if rank(role) > rank(self.role) {
            return Err(Error::Forbidden(format!(
                "a {} may not manage a {}",
                self.role.as_str(),
                role.as_str()
            )));
        }
        Ok(())
    }
}

fn forbidden(action: Action, prefecture: Option<PrefectureCode>) -> Error {
    match prefecture {
        Some(code) => Error::Forbidden(format!(
            "not allowed: {action:?} in prefecture {code} is outside your role"
        )),
        None => Error::Forbidden(format!(
            "not allowed: {action:?} needs a national or super admin"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(role: Role, prefecture: Option<i16>) -> AdminCaller {
        AdminCaller {
            id: uuid::Uuid::nil(),
            role,
            prefecture: prefecture.and_then(PrefectureCode::from_stored),
        }
    }

    fn code(value: i16) -> Option<PrefectureCode> {
        PrefectureCode::from_stored(value)
    }

    #[test]
    fn prefecture_admin_is_confined_to_own_prefecture() {
        let osaka = admin(Role::PrefectureAdmin, Some(27));
        for action in Action::ALL {
            assert!(
                osaka.authorize(action, code(27)).is_ok(),
                "{action:?} in own prefecture"
            );
            assert_eq!(
                osaka.authorize(action, code(13)).unwrap_err().code(),
                "FORBIDDEN",
                "{action:?}"
            );
            assert_eq!(
                osaka.authorize(action, None).unwrap_err().code(),
                "FORBIDDEN",
                "{action:?} national"
            );
        }
    }

    #[test]
    fn national_and_super_admins_act_everywhere() {
        for role in [Role::NationalAdmin, Role::SuperAdmin] {
            for action in Action::ALL {
                assert!(admin(role, None).authorize(action, code(13)).is_ok());
                assert!(admin(role, None).authorize(action, None).is_ok());
            }
        }
    }

    #[test]
    fn nobody_manages_a_higher_role() {
        let national = admin(Role::NationalAdmin, None);
        assert!(national
            .authorize_admin_management(Action::CreateAdmin, Role::NationalAdmin, None)
            .is_ok());
        assert!(national
            .authorize_admin_management(Action::CreateAdmin, Role::PrefectureAdmin, code(1))
            .is_ok());
        assert!(national
            .authorize_admin_management(Action::CreateAdmin, Role::SuperAdmin, None)
            .is_err());
        let prefecture = admin(Role::PrefectureAdmin, Some(1));
        assert!(prefecture
            .authorize_admin_management(Action::DeleteAdmin, Role::PrefectureAdmin, code(1))
            .is_ok());
        assert!(prefecture
            .authorize_admin_management(Action::DeleteAdmin, Role::NationalAdmin, None)
            .is_err());
    }

    #[test]
    fn phone_user_role_has_no_admin_action() {
        for action in Action::ALL {
            assert_eq!(scope(Role::User, action), Scope::Nowhere);
        }
    }
}
