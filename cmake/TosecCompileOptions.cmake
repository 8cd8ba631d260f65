# Warning and sanitizer flags shared by every TOSEC target.
# Targets opt in with tosec_target_defaults(<target>) so third-party and generated code
# (protobuf) is not held to -Werror.
add_library(tosec_defaults INTERFACE)
target_compile_options(tosec_defaults INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wnull-dereference -Wimplicit-fallthrough
  $<$<BOOL:${TOSEC_WERROR}>:-Werror>)

if(TOSEC_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()
if(TOSEC_TSAN)
  # -Wno-tsan: GCC warns that TSan does not model atomic_thread_fence. The notifier's Dekker
  # handshake needs its seq_cst fences; TSan still checks every slot access, which is ordered by
  # acquire/release on the ring indices.
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer $<$<CXX_COMPILER_ID:GNU>:-Wno-tsan>)
  add_link_options(-fsanitize=thread)
endif()

function(tosec_target_defaults target)
  target_link_libraries(${target} PRIVATE tosec_defaults)
endfunction()
