//! Readers for the public interaction logs under `../shared/data` (relative to the project
//! root), used to evaluate rankings offline and to draw pictures of what tactful does. Never
//! used at request time: the server knows nothing of these files, and nothing here is needed
//! to run it.
//!
//! The data stays outside the repository (its licences allow research use, not
//! redistribution); readers take the folder as an argument.

pub mod movielens;
pub mod taobao;
