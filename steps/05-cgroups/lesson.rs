// The acceptance tests (tests/05-cgroups.rs) are compiled into two
// crates: the reference solution and the student's starter. They include this
// file to reach the library of the crate they are compiled into by one name,
// `lesson`: `cargo xtask steps` renames the crate here, as everywhere in the
// starter.
use step_05_cgroups as lesson;
