# Debian packages (cpack -G DEB in the build directory; tests/install/deb.sh):
#   txbox-relay   /usr/bin/txbox-relay and txboxctl, the systemd unit, the annotated
#                 /etc/txbox/relay.toml (a conffile), the txbox system user (maintainer scripts)
#   libtxbox-dev  headers, static libraries, CMake and pkg-config files, the migrations in
#                 /usr/share/txbox/migrations
# Install components: "relay" (set on the two programs' install rules) and "dev" (every other
# rule: CMAKE_INSTALL_DEFAULT_COMPONENT_NAME in the top CMakeLists.txt). The files under /etc
# and /lib are package-only (EXCLUDE_FROM_ALL): a plain `cmake --install` never writes there.
set(TXBOX_PACKAGING_DIR ${PROJECT_SOURCE_DIR}/packaging)
install(FILES ${PROJECT_SOURCE_DIR}/relay/dist/txbox-relay.toml DESTINATION /etc/txbox
        RENAME relay.toml COMPONENT relay EXCLUDE_FROM_ALL)
# The one systemd unit (also the one for installs from source, see its comment).
install(FILES ${PROJECT_SOURCE_DIR}/relay/dist/txbox-relay.service DESTINATION /lib/systemd/system
        COMPONENT relay EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME txbox)
set(CPACK_PACKAGE_VENDOR "txbox")
set(CPACK_PACKAGE_CONTACT "txbox maintainers <txbox@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Transactional outbox and inbox for PostgreSQL and Kafka")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL relay dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
# Run-time libraries of the programs, found by dpkg-shlibdeps (dpkg-dev).
set(CPACK_DEBIAN_RELAY_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_RELAY_PACKAGE_NAME txbox-relay)
set(CPACK_DEBIAN_RELAY_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_RELAY_DESCRIPTION
  "txbox relay: publishes the PostgreSQL outbox to Kafka\ntxbox-relay (a systemd service running as the txbox user) and txboxctl, the\noperator's tool. Configure /etc/txbox/relay.toml, then systemctl enable --now txbox-relay.")
set(CPACK_DEBIAN_RELAY_PACKAGE_CONTROL_EXTRA
  ${TXBOX_PACKAGING_DIR}/debian/relay/postinst ${TXBOX_PACKAGING_DIR}/debian/relay/prerm
  ${TXBOX_PACKAGING_DIR}/debian/relay/postrm ${TXBOX_PACKAGING_DIR}/debian/relay/conffiles)
set(CPACK_DEBIAN_RELAY_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# The headers and static libraries need the development packages of what they link.
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libtxbox-dev)
# The static libraries are compiled against one libpqxx release line (6.4 and 7.x differ in
# ABI, and each 7.x minor release is its own library: libpqxx-7.10): depend on that line.
string(REGEX MATCH "^([0-9]+)\\.([0-9]+)" _pqxx_line "${PQXX_VERSION}")
math(EXPR _pqxx_next_minor "${CMAKE_MATCH_2} + 1")
set(_pqxx_dep "libpqxx-dev (>= ${_pqxx_line}), libpqxx-dev (<< ${CMAKE_MATCH_1}.${_pqxx_next_minor})")
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
  "${_pqxx_dep}, libpq-dev, librdkafka-dev, libspdlog-dev, libfmt-dev, nlohmann-json3-dev, libtoml11-dev, pkg-config")
set(CPACK_DEBIAN_DEV_DESCRIPTION
  "txbox: transactional outbox and inbox for C++ services (development files)\nHeaders and static libraries of txbox::outbox, txbox::inbox and txbox::relay, their CMake\npackage (find_package(txbox)) and pkg-config files (txbox-outbox, txbox-inbox), and the\nSQL migrations in /usr/share/txbox/migrations.")
include(CPack)
