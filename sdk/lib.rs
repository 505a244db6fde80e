pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/hooteproto.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/payload_meta.rs"));
}
