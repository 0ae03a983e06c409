//! Catalog items off the wire, handed to the catalog, which checks them
//! (`catalog::Catalog::check`).

use crate::catalog::{Invalid, ItemFields};
use crate::pb;

/// A catalog item off the wire, to be checked by the catalog (its vectors are moved, not
/// copied; the bytes form is converted once). Refused here only for what the wire form alone
/// can get wrong: both embedding forms set, or bytes that are not whole float32 values.
pub fn catalog_item(item: pb::CatalogItem) -> Result<ItemFields, Invalid> {
    let embedding = match (item.embedding.is_empty(), item.embedding_f32le.is_empty()) {
        (_, true) => item.embedding,
        (true, false) if item.embedding_f32le.len().is_multiple_of(4) => {
            let mut values = Vec::with_capacity(item.embedding_f32le.len() / 4);
            pb::bulk::extend_f32le(&mut values, &item.embedding_f32le);
            values
        }
        (true, false) => {
            return Err(Invalid::new(
                "embedding_f32le",
                format!(
                    "is {} bytes, not a whole number of little-endian float32 values (4 bytes \
                     each)",
                    item.embedding_f32le.len()
                ),
            ));
        }
        (false, false) => {
            return Err(Invalid::new(
                "embedding_f32le",
                "set embedding or embedding_f32le, not both",
            ));
        }
    };
    Ok(ItemFields {
        item_id: item.item_id,
        category_id: item.category_id,
        brand_id: item.brand_id,
        shop_id: item.shop_id,
        price: item.price,
        popularity: item.popularity,
        embedding,
        title: item.title,
        complement_categories: item.complement_categories,
        deleted: item.deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_items_leave_the_wire_unchanged() {
        let wire = pb::CatalogItem {
            item_id: 1,
            category_id: 2,
            brand_id: 3,
            shop_id: 4,
            price: 5.0,
            popularity: 6.0,
            embedding: vec![7.0],
            title: "t".into(),
            complement_categories: vec![8],
            deleted: true,
            embedding_f32le: Vec::new(),
        };
        let f = catalog_item(wire).unwrap();
        assert_eq!(
            (
                f.item_id,
                f.category_id,
                f.brand_id,
                f.shop_id,
                f.price,
                f.popularity
            ),
            (1, 2, 3, 4, 5.0, 6.0)
        );
        assert_eq!((f.embedding, f.title.as_str()), (vec![7.0], "t"));
        assert_eq!((f.complement_categories, f.deleted), (vec![8], true));
    }

    #[test]
    fn the_bytes_form_is_the_same_vector_and_not_both() {
        let values = [0.25f32, -1.5, 3.0e5];
        let item = pb::CatalogItem {
            item_id: 1,
            embedding_f32le: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        assert_eq!(catalog_item(item.clone()).unwrap().embedding, values);
        let both = pb::CatalogItem {
            embedding: values.to_vec(),
            ..item.clone()
        };
        assert_eq!(catalog_item(both).unwrap_err().field, "embedding_f32le");
        let mut ragged = item;
        ragged.embedding_f32le.pop();
        assert_eq!(catalog_item(ragged).unwrap_err().field, "embedding_f32le");
    }

    #[test]
    fn the_catalog_bounds_embedding_values_as_a_ranking_does() {
        assert_eq!(
            crate::catalog::MAX_EMBEDDING_VALUE,
            crate::rank::MAX_EMBEDDING_VALUE
        );
    }
}
