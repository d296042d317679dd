//! A phone user's profile: when it was created and its prefecture.

use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};
use uuid::Uuid;

use crate::{
    entity::users,
    error::{Error, Result},
    prefectures::PrefectureCode,
};

/// Returns the user's profile.
pub async fn find(db: &DatabaseConnection, user_id: Uuid) -> Result<users::Model> {
    users::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .ok_or_else(|| {
            Error::Unauthenticated(
                "the user of this access token no longer exists; log in again".into(),
            )
        })
}

/// Sets or clears the user's prefecture and returns the updated profile.
pub async fn set_prefecture(
    db: &DatabaseConnection,
    user_id: Uuid,
    prefecture: Option<PrefectureCode>,
) -> Result<users::Model> {
    let mut user: users::ActiveModel = find(db, user_id).await?.into();
    user.prefecture = Set(prefecture.map(PrefectureCode::get));
    Ok(user.update(db).await?)
}
