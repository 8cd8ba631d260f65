// libtosec.so is tosec_guest linked whole; this translation unit only gives the target a source.
namespace tosec::guest {
int libtosec_shared_marker = 0;
}  // namespace tosec::guest
