# Writes a C++ source that holds a file's bytes: cmake -DIN=file -DOUT=file.cpp -DNAME=kName -DNS=ns -P embed_file.cmake
# (used for the server's web page: no tool beyond CMake, no network).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR size "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){32})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by cmake/embed_file.cmake.\nnamespace ${NS} {\nextern const char ${NAME}[];\nextern const unsigned long ${NAME}Size;\nconst char ${NAME}[] = {\n${bytes}0};\nconst unsigned long ${NAME}Size = ${size};\n}\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
