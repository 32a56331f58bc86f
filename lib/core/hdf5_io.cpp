// HDF5 wrappers: handle ownership, HDF5's error stack turned into race::Error, type checks and range-checked
// conversion on read, and the write-to-temp / fsync / rename commit.
#include "core/hdf5_io.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <system_error>
#include <type_traits>
#include <utility>

#include "core/error.h"

namespace race {

static_assert(std::is_same_v<hid_t, std::int64_t>, "hdf5_io.h stores hid_t as std::int64_t");

namespace {

// HDF5 prints its whole error stack to stderr by default; we report errors ourselves. In thread-safe builds
// that setting is per thread, hence once per thread rather than once per process.
void silence_hdf5() {
  thread_local const bool silenced = H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0;
  (void)silenced;
}

// The most specific message on HDF5's error stack as ": message" (empty when there is none); clears it.
std::string hdf5_cause() {
  std::string cause;
  const H5E_walk2_t innermost = [](unsigned n, const H5E_error2_t* error, void* data) -> herr_t {
    if (n == 0 && error->desc) *static_cast<std::string*>(data) = error->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, &cause);
  H5Eclear2(H5E_DEFAULT);
  return cause.empty() ? cause : ": " + cause;
}

// Owns one HDF5 id and closes it with the matching H5xclose.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, -1)), closer_(other.closer_) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle& operator=(Handle&&) = delete;
  ~Handle() {
    if (id_ >= 0) closer_(id_);
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  Closer closer_;
};

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string root_if_empty(std::string_view path) { return path.empty() ? "/" : std::string(path); }

// H5Lexists fails, rather than returning false, when a group on the way is missing, so each prefix of the
// path is checked in turn.
bool link_exists(hid_t file, const std::string& path) {
  std::string prefix;
  std::size_t start = 0;
  while (start < path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    if (slash > start) {
      prefix += '/';
      prefix.append(path, start, slash - start);
      if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
      }
    }
    start = slash + 1;
  }
  return true;
}

// H5I_DATASET, H5I_GROUP, ... for an existing object; H5I_BADID when there is none at `path`.
H5I_type_t object_type(hid_t file, const std::string& path) {
  if (!link_exists(file, path)) return H5I_BADID;
  const Handle object(H5Oopen(file, path.c_str(), H5P_DEFAULT), H5Oclose);
  if (!object.ok()) {
    H5Eclear2(H5E_DEFAULT);
    return H5I_BADID;
  }
  return H5Iget_type(object.get());
}

std::string type_name(hid_t type) {
  const std::size_t bits = H5Tget_size(type) * 8;
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return fmt::format("{}int{}", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bits);
    case H5T_FLOAT:
      return fmt::format("float{}", bits);
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    case H5T_ENUM:
      return "enum";
    case H5T_ARRAY:
      return "array";
    case H5T_VLEN:
      return "variable-length sequence";
    case H5T_OPAQUE:
      return "opaque";
    case H5T_BITFIELD:
      return "bitfield";
    case H5T_REFERENCE:
      return "reference";
    case H5T_TIME:
      return "time";
    default:
      return "unknown type";
  }
}

// "integer (uint16)", "float (float64)", "string", ...: the class people think in, then the exact type.
std::string described(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  if (cls == H5T_INTEGER) return "integer (" + type_name(type) + ")";
  if (cls == H5T_FLOAT) return "float (" + type_name(type) + ")";
  return type_name(type);
}

template <typename T>
hid_t memory_type() {
  if constexpr (std::is_same_v<T, float>) return H5T_NATIVE_FLOAT;
  if constexpr (std::is_same_v<T, std::int32_t>) return H5T_NATIVE_INT32;
  if constexpr (std::is_same_v<T, std::int64_t>) return H5T_NATIVE_INT64;
  if constexpr (std::is_same_v<T, std::uint8_t>) return H5T_NATIVE_UINT8;
  if constexpr (std::is_same_v<T, std::uint16_t>) return H5T_NATIVE_UINT16;
  if constexpr (std::is_same_v<T, std::uint32_t>) return H5T_NATIVE_UINT32;
  if constexpr (std::is_same_v<T, std::uint64_t>) return H5T_NATIVE_UINT64;
}

// Fixed little-endian storage types, so files are identical whichever machine wrote them.
template <typename T>
hid_t file_type() {
  if constexpr (std::is_same_v<T, float>) return H5T_IEEE_F32LE;
  if constexpr (std::is_same_v<T, std::int32_t>) return H5T_STD_I32LE;
  if constexpr (std::is_same_v<T, std::int64_t>) return H5T_STD_I64LE;
  if constexpr (std::is_same_v<T, std::uint8_t>) return H5T_STD_U8LE;
  if constexpr (std::is_same_v<T, std::uint16_t>) return H5T_STD_U16LE;
  if constexpr (std::is_same_v<T, std::uint32_t>) return H5T_STD_U32LE;
  if constexpr (std::is_same_v<T, std::uint64_t>) return H5T_STD_U64LE;
}

template <typename T>
const char* element_name() {
  if constexpr (std::is_same_v<T, float>) return "float32";
  if constexpr (std::is_same_v<T, std::int32_t>) return "int32";
  if constexpr (std::is_same_v<T, std::int64_t>) return "int64";
  if constexpr (std::is_same_v<T, std::uint8_t>) return "uint8";
  if constexpr (std::is_same_v<T, std::uint16_t>) return "uint16";
  if constexpr (std::is_same_v<T, std::uint32_t>) return "uint32";
  if constexpr (std::is_same_v<T, std::uint64_t>) return "uint64";
}

// The source value handed to a conversion exception callback, which holds it in the stored byte order.
struct SourceValue {
  std::string text;
  bool finite = true;
};

SourceValue source_value(hid_t type, const void* source) {
  const H5T_order_t order = H5Tget_order(type);
  if (!source || (order != H5T_ORDER_LE && order != H5T_ORDER_BE)) return {};
  const bool swap = (order == H5T_ORDER_BE) != (std::endian::native == std::endian::big);
  const std::size_t size = H5Tget_size(type);
  const auto load = [source, swap](auto value) {
    auto* bytes = reinterpret_cast<unsigned char*>(&value);
    std::memcpy(bytes, source, sizeof value);
    if (swap) std::reverse(bytes, bytes + sizeof value);
    if constexpr (std::is_floating_point_v<decltype(value)>) {
      return SourceValue{fmt::format("{}", value), std::isfinite(value)};
    } else {
      return SourceValue{fmt::format("{}", value), true};
    }
  };
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: {
      const bool is_signed = H5Tget_sign(type) != H5T_SGN_NONE;
      if (size == 1) return is_signed ? load(std::int8_t{}) : load(std::uint8_t{});
      if (size == 2) return is_signed ? load(std::int16_t{}) : load(std::uint16_t{});
      if (size == 4) return is_signed ? load(std::int32_t{}) : load(std::uint32_t{});
      if (size == 8) return is_signed ? load(std::int64_t{}) : load(std::uint64_t{});
      return {};
    }
    case H5T_FLOAT:
      if (size == 4) return load(float{});
      if (size == 8) return load(double{});
      return {};
    default:
      return {};
  }
}

struct RangeFailure {
  bool hit = false;
  std::string value;
};

// HDF5 converts out-of-range values by clamping unless told otherwise; clamped token ids or labels would
// silently corrupt training, so a range exception aborts the read instead. Infinities and NaN are left to
// HDF5, which keeps them as they are.
H5T_conv_ret_t abort_out_of_range(H5T_conv_except_t except, hid_t source_type, hid_t, void* source, void*,
                                  void* data) {
  if (except != H5T_CONV_EXCEPT_RANGE_HI && except != H5T_CONV_EXCEPT_RANGE_LOW) return H5T_CONV_UNHANDLED;
  SourceValue value = source_value(source_type, source);
  if (!value.finite) return H5T_CONV_UNHANDLED;
  auto* failure = static_cast<RangeFailure*>(data);
  failure->hit = true;
  failure->value = std::move(value.text);
  return H5T_CONV_ABORT;
}

std::string dataset_context(const std::string& file, std::string_view dataset) {
  return fmt::format("{}: dataset \"{}\"", file, dataset);
}

Handle open_dataset(hid_t file, const std::string& file_name, std::string_view dataset) {
  const std::string path = root_if_empty(dataset);
  const H5I_type_t type = object_type(file, path);
  if (type == H5I_BADID) fail("{} not found", dataset_context(file_name, dataset));
  if (type != H5I_DATASET) {
    fail("{}: is {}, not a dataset", dataset_context(file_name, dataset),
         type == H5I_GROUP ? "a group" : "a named datatype");
  }
  Handle handle(H5Dopen2(file, path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!handle.ok()) fail("{}: cannot open{}", dataset_context(file_name, dataset), hdf5_cause());
  return handle;
}

std::vector<std::int64_t> dataset_shape(hid_t dataset, const std::string& context) {
  const Handle space(H5Dget_space(dataset), H5Sclose);
  if (!space.ok()) fail("{}: cannot read its shape{}", context, hdf5_cause());
  if (H5Sget_simple_extent_type(space.get()) == H5S_NULL)
    fail("{}: has a null dataspace (no shape)", context);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 0)));
  if (rank < 0 || H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) {
    fail("{}: cannot read its shape{}", context, hdf5_cause());
  }
  return {dims.begin(), dims.end()};
}

std::int64_t element_count(const std::vector<std::int64_t>& shape) {
  std::int64_t count = 1;
  for (const std::int64_t dim : shape) count *= dim;
  return count;
}

template <typename T>
ArrayData<T> read_array(hid_t file, const std::string& file_name, std::string_view dataset) {
  const std::string context = dataset_context(file_name, dataset);
  const Handle handle = open_dataset(file, file_name, dataset);
  const Handle type(H5Dget_type(handle.get()), H5Tclose);
  if (!type.ok()) fail("{}: cannot read its type{}", context, hdf5_cause());
  const H5T_class_t cls = H5Tget_class(type.get());
  if constexpr (std::is_same_v<T, float>) {
    const std::size_t size = H5Tget_size(type.get());
    if (cls != H5T_FLOAT || (size != 4 && size != 8)) {
      fail("{}: expected float32 or float64, got {}", context, described(type.get()));
    }
  } else if (cls != H5T_INTEGER) {
    fail("{}: expected an integer type, got {}", context, described(type.get()));
  }

  ArrayData<T> out;
  out.shape = dataset_shape(handle.get(), context);
  out.values.resize(static_cast<std::size_t>(element_count(out.shape)));
  if (out.values.empty()) return out;

  const Handle transfer(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  RangeFailure failure;
  if (!transfer.ok() || H5Pset_type_conv_cb(transfer.get(), abort_out_of_range, &failure) < 0) {
    fail("{}: cannot set up the read{}", context, hdf5_cause());
  }
  if (H5Dread(handle.get(), memory_type<T>(), H5S_ALL, H5S_ALL, transfer.get(), out.values.data()) < 0) {
    const std::string cause = hdf5_cause();
    if (failure.hit) {
      fail("{}: stored value {}does not fit in {}", context, failure.value.empty() ? "" : failure.value + " ",
           element_name<T>());
    }
    fail("{}: read failed{}", context, cause);
  }
  return out;
}

std::string attribute_context(const std::string& file, std::string_view object, std::string_view attribute) {
  return fmt::format("{}: attribute \"{}\" of \"{}\"", file, attribute, root_if_empty(object));
}

Handle open_attribute(hid_t file, const std::string& file_name, std::string_view object,
                      std::string_view attribute) {
  const std::string context = attribute_context(file_name, object, attribute);
  const std::string path = root_if_empty(object);
  if (object_type(file, path) == H5I_BADID) fail("{}: no object \"{}\" in the file", context, path);
  const Handle owner(H5Oopen(file, path.c_str(), H5P_DEFAULT), H5Oclose);
  if (!owner.ok()) fail("{}: cannot open \"{}\"{}", context, path, hdf5_cause());
  const std::string name(attribute);
  if (H5Aexists(owner.get(), name.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    fail("{} not found", context);
  }
  Handle handle(H5Aopen(owner.get(), name.c_str(), H5P_DEFAULT), H5Aclose);
  if (!handle.ok()) fail("{}: cannot open{}", context, hdf5_cause());
  const Handle space(H5Aget_space(handle.get()), H5Sclose);
  const hssize_t count = space.ok() ? H5Sget_simple_extent_npoints(space.get()) : -1;
  if (count != 1) fail("{}: expected a single value, got {} values", context, count);
  return handle;
}

Handle file_access_properties() {
  Handle properties(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
#if H5_VERSION_GE(1, 10, 7)
  // Keep HDF5's file locks, but do not fail on file systems where locking is disabled (NFS and Lustre scratch
  // space often are), which would otherwise make every open fail there.
  if (properties.ok()) H5Pset_file_locking(properties.get(), true, true);
#endif
  return properties;
}

bool sync_path(const std::filesystem::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return false;
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  return synced;
}

}  // namespace

std::int64_t DatasetInfo::num_elements() const { return element_count(shape); }

Hdf5File::Hdf5File(std::int64_t id, std::string name) : id_(id), name_(std::move(name)) {}

Hdf5File::Hdf5File(Hdf5File&& other) noexcept
    : id_(std::exchange(other.id_, -1)), name_(std::move(other.name_)) {}

Hdf5File& Hdf5File::operator=(Hdf5File&& other) noexcept {
  if (this != &other) {
    close();
    id_ = std::exchange(other.id_, -1);
    name_ = std::move(other.name_);
  }
  return *this;
}

Hdf5File::~Hdf5File() { close(); }

bool Hdf5File::close() noexcept {
  if (id_ < 0) return true;
  const bool closed = H5Fclose(std::exchange(id_, -1)) >= 0;
  H5Eclear2(H5E_DEFAULT);
  return closed;
}

std::int64_t Hdf5File::id() const {
  silence_hdf5();
  if (id_ < 0) fail("{}: the file is closed", name_);
  return id_;
}

Hdf5File Hdf5File::open(const std::filesystem::path& path) {
  silence_hdf5();
  const std::string name = path.string();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) fail("{}: no such file", name);
  if (std::filesystem::is_directory(status)) fail("{}: is a directory, not an HDF5 file", name);
  const htri_t is_hdf5 = H5Fis_hdf5(name.c_str());
  if (is_hdf5 == 0) fail("{}: not an HDF5 file", name);
  if (is_hdf5 < 0) fail("{}: cannot open{}", name, hdf5_cause());
  const Handle properties = file_access_properties();
  const hid_t id = H5Fopen(name.c_str(), H5F_ACC_RDONLY, properties.get());
  if (id < 0) fail("{}: cannot open{}", name, hdf5_cause());
  return Hdf5File(id, name);
}

bool Hdf5File::has_dataset(std::string_view path) const {
  return object_type(id(), root_if_empty(path)) == H5I_DATASET;
}

bool Hdf5File::has_group(std::string_view path) const {
  return object_type(id(), root_if_empty(path)) == H5I_GROUP;
}

bool Hdf5File::has_attribute(std::string_view object, std::string_view attribute) const {
  const std::string path = root_if_empty(object);
  if (object_type(id(), path) == H5I_BADID) return false;
  const Handle owner(H5Oopen(id(), path.c_str(), H5P_DEFAULT), H5Oclose);
  const std::string name(attribute);
  const bool exists = owner.ok() && H5Aexists(owner.get(), name.c_str()) > 0;
  H5Eclear2(H5E_DEFAULT);
  return exists;
}

DatasetInfo Hdf5File::dataset_info(std::string_view dataset) const {
  const std::string context = dataset_context(name_, dataset);
  const Handle handle = open_dataset(id(), name_, dataset);
  const Handle type(H5Dget_type(handle.get()), H5Tclose);
  if (!type.ok()) fail("{}: cannot read its type{}", context, hdf5_cause());
  DatasetInfo info;
  info.shape = dataset_shape(handle.get(), context);
  const H5T_class_t cls = H5Tget_class(type.get());
  info.element_class = cls == H5T_INTEGER  ? ElementClass::integer
                       : cls == H5T_FLOAT  ? ElementClass::floating
                       : cls == H5T_STRING ? ElementClass::string
                                           : ElementClass::other;
  info.element_size = static_cast<std::int64_t>(H5Tget_size(type.get()));
  info.is_signed = cls == H5T_INTEGER && H5Tget_sign(type.get()) != H5T_SGN_NONE;
  info.type_name = type_name(type.get());
  return info;
}

ArrayData<float> Hdf5File::read_float32(std::string_view dataset) const {
  return read_array<float>(id(), name_, dataset);
}
ArrayData<std::int32_t> Hdf5File::read_int32(std::string_view dataset) const {
  return read_array<std::int32_t>(id(), name_, dataset);
}
ArrayData<std::int64_t> Hdf5File::read_int64(std::string_view dataset) const {
  return read_array<std::int64_t>(id(), name_, dataset);
}
ArrayData<std::uint8_t> Hdf5File::read_uint8(std::string_view dataset) const {
  return read_array<std::uint8_t>(id(), name_, dataset);
}
ArrayData<std::uint16_t> Hdf5File::read_uint16(std::string_view dataset) const {
  return read_array<std::uint16_t>(id(), name_, dataset);
}
ArrayData<std::uint32_t> Hdf5File::read_uint32(std::string_view dataset) const {
  return read_array<std::uint32_t>(id(), name_, dataset);
}
ArrayData<std::uint64_t> Hdf5File::read_uint64(std::string_view dataset) const {
  return read_array<std::uint64_t>(id(), name_, dataset);
}

std::string Hdf5File::read_string_attribute(std::string_view object, std::string_view attribute) const {
  const std::string context = attribute_context(name_, object, attribute);
  const Handle handle = open_attribute(id(), name_, object, attribute);
  const Handle type(H5Aget_type(handle.get()), H5Tclose);
  if (!type.ok()) fail("{}: cannot read its type{}", context, hdf5_cause());
  if (H5Tget_class(type.get()) != H5T_STRING)
    fail("{}: expected a string, got {}", context, described(type.get()));

  if (H5Tis_variable_str(type.get()) > 0) {
    const Handle memory(H5Tcopy(H5T_C_S1), H5Tclose);
    char* text = nullptr;
    if (!memory.ok() || H5Tset_size(memory.get(), H5T_VARIABLE) < 0 ||
        H5Tset_cset(memory.get(), H5Tget_cset(type.get())) < 0 ||
        H5Aread(handle.get(), memory.get(), &text) < 0) {
      fail("{}: read failed{}", context, hdf5_cause());
    }
    std::string value = text ? text : "";
    H5free_memory(text);
    return value;
  }

  std::string value(H5Tget_size(type.get()), '\0');
  if (H5Aread(handle.get(), type.get(), value.data()) < 0) fail("{}: read failed{}", context, hdf5_cause());
  if (H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD) {
    value.erase(value.find_last_not_of(' ') + 1);
  } else if (const std::size_t end = value.find('\0'); end != std::string::npos) {
    value.resize(end);
  }
  return value;
}

std::int64_t Hdf5File::read_int64_attribute(std::string_view object, std::string_view attribute) const {
  const std::string context = attribute_context(name_, object, attribute);
  const Handle handle = open_attribute(id(), name_, object, attribute);
  const Handle type(H5Aget_type(handle.get()), H5Tclose);
  if (!type.ok()) fail("{}: cannot read its type{}", context, hdf5_cause());
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    fail("{}: expected an integer, got {}", context, described(type.get()));
  // H5Aread takes no transfer properties, so no conversion callback: the one storage type that can exceed
  // int64 (unsigned 64-bit) is read as such and checked here instead of being clamped by HDF5.
  if (H5Tget_sign(type.get()) == H5T_SGN_NONE && H5Tget_size(type.get()) >= 8) {
    std::uint64_t value = 0;
    if (H5Aread(handle.get(), H5T_NATIVE_UINT64, &value) < 0)
      fail("{}: read failed{}", context, hdf5_cause());
    if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      fail("{}: stored value {} does not fit in int64", context, value);
    }
    return static_cast<std::int64_t>(value);
  }
  std::int64_t value = 0;
  if (H5Aread(handle.get(), H5T_NATIVE_INT64, &value) < 0) fail("{}: read failed{}", context, hdf5_cause());
  return value;
}

double Hdf5File::read_double_attribute(std::string_view object, std::string_view attribute) const {
  const std::string context = attribute_context(name_, object, attribute);
  const Handle handle = open_attribute(id(), name_, object, attribute);
  const Handle type(H5Aget_type(handle.get()), H5Tclose);
  if (!type.ok()) fail("{}: cannot read its type{}", context, hdf5_cause());
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    fail("{}: expected a number, got {}", context, described(type.get()));
  double value = 0;
  if (H5Aread(handle.get(), H5T_NATIVE_DOUBLE, &value) < 0) fail("{}: read failed{}", context, hdf5_cause());
  return value;
}

Hdf5Writer::Hdf5Writer(std::int64_t id, std::filesystem::path final_path, std::filesystem::path temp_path)
    : Hdf5File(id, final_path.string()),
      final_path_(std::move(final_path)),
      temp_path_(std::move(temp_path)) {}

Hdf5Writer::Hdf5Writer(Hdf5Writer&& other) noexcept
    : Hdf5File(std::move(other)),
      final_path_(std::move(other.final_path_)),
      temp_path_(std::exchange(other.temp_path_, {})) {}

Hdf5Writer& Hdf5Writer::operator=(Hdf5Writer&& other) noexcept {
  if (this != &other) {
    discard();
    Hdf5File::operator=(std::move(other));
    final_path_ = std::move(other.final_path_);
    temp_path_ = std::exchange(other.temp_path_, {});
  }
  return *this;
}

Hdf5Writer::~Hdf5Writer() { discard(); }

void Hdf5Writer::discard() noexcept {
  close();
  if (!temp_path_.empty()) {
    std::error_code ec;
    std::filesystem::remove(temp_path_, ec);
    temp_path_.clear();
  }
}

Hdf5Writer Hdf5Writer::create(const std::filesystem::path& path) {
  silence_hdf5();
  const std::string name = path.string();
  std::filesystem::path temp = path;
  temp += ".tmp";
  const std::filesystem::path parent = path.has_parent_path() ? path.parent_path() : ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(parent, ec))
    fail("{}: directory \"{}\" does not exist", name, parent.string());
  const Handle properties = file_access_properties();
  const hid_t id = H5Fcreate(temp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, properties.get());
  if (id < 0) fail("{}: cannot create \"{}\"{}", name, temp.string(), hdf5_cause());
  return Hdf5Writer(id, path, std::move(temp));
}

template <typename T>
void Hdf5Writer::write_array(std::string_view dataset, const std::vector<std::int64_t>& shape,
                             std::span<const T> values) {
  const hid_t file = id();
  const std::string context = dataset_context(name(), dataset);
  std::int64_t count = 1;
  for (const std::int64_t dim : shape) {
    if (dim < 0) fail("{}: negative dimension in shape {}", context, shape_text(shape));
    if (dim != 0 && count > std::numeric_limits<std::int64_t>::max() / dim) {
      fail("{}: shape {} is too large", context, shape_text(shape));
    }
    count *= dim;
  }
  if (static_cast<std::uint64_t>(count) != values.size()) {
    fail("{}: shape {} holds {} values but {} were given", context, shape_text(shape), count, values.size());
  }
  const std::string path(dataset);
  if (object_type(file, path) != H5I_BADID) fail("{}: already exists", context);

  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  const Handle space(shape.empty() ? H5Screate(H5S_SCALAR)
                                   : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                     H5Sclose);
  const Handle link_properties(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  if (!space.ok() || !link_properties.ok() ||
      H5Pset_create_intermediate_group(link_properties.get(), 1) < 0) {
    fail("{}: cannot set up the write{}", context, hdf5_cause());
  }
  const Handle handle(H5Dcreate2(file, path.c_str(), file_type<T>(), space.get(), link_properties.get(),
                                 H5P_DEFAULT, H5P_DEFAULT),
                      H5Dclose);
  if (!handle.ok()) fail("{}: cannot create{}", context, hdf5_cause());
  if (count > 0 &&
      H5Dwrite(handle.get(), memory_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0) {
    fail("{}: write failed{}", context, hdf5_cause());
  }
}

void Hdf5Writer::write(std::string_view dataset, const std::vector<std::int64_t>& shape,
                       std::span<const float> values) {
  write_array(dataset, shape, values);
}
void Hdf5Writer::write(std::string_view dataset, const std::vector<std::int64_t>& shape,
                       std::span<const std::int32_t> values) {
  write_array(dataset, shape, values);
}
void Hdf5Writer::write(std::string_view dataset, const std::vector<std::int64_t>& shape,
                       std::span<const std::int64_t> values) {
  write_array(dataset, shape, values);
}
void Hdf5Writer::write(std::string_view dataset, const std::vector<std::int64_t>& shape,
                       std::span<const std::uint8_t> values) {
  write_array(dataset, shape, values);
}
void Hdf5Writer::write(std::string_view dataset, const std::vector<std::int64_t>& shape,
                       std::span<const std::uint16_t> values) {
  write_array(dataset, shape, values);
}
void Hdf5Writer::write(std::string_view dataset, const std::vector<std::int64_t>& shape,
                       std::span<const std::uint32_t> values) {
  write_array(dataset, shape, values);
}
void Hdf5Writer::write(std::string_view dataset, const std::vector<std::int64_t>& shape,
                       std::span<const std::uint64_t> values) {
  write_array(dataset, shape, values);
}

void Hdf5Writer::write_attribute(std::string_view object, std::string_view attribute, std::int64_t file_type,
                                 std::int64_t memory_type, const void* value) {
  const hid_t file = id();
  const std::string context = attribute_context(name(), object, attribute);
  const std::string path = root_if_empty(object);
  if (object_type(file, path) == H5I_BADID) {
    const Handle link_properties(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
    if (!link_properties.ok() || H5Pset_create_intermediate_group(link_properties.get(), 1) < 0) {
      fail("{}: cannot set up the write{}", context, hdf5_cause());
    }
    const Handle group(H5Gcreate2(file, path.c_str(), link_properties.get(), H5P_DEFAULT, H5P_DEFAULT),
                       H5Gclose);
    if (!group.ok()) fail("{}: cannot create group \"{}\"{}", context, path, hdf5_cause());
  }
  const Handle owner(H5Oopen(file, path.c_str(), H5P_DEFAULT), H5Oclose);
  if (!owner.ok()) fail("{}: cannot open \"{}\"{}", context, path, hdf5_cause());
  const std::string attribute_name(attribute);
  if (H5Aexists(owner.get(), attribute_name.c_str()) > 0 &&
      H5Adelete(owner.get(), attribute_name.c_str()) < 0) {
    fail("{}: cannot replace the existing attribute{}", context, hdf5_cause());
  }
  const Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  const Handle handle(
      H5Acreate2(owner.get(), attribute_name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
      H5Aclose);
  if (!handle.ok()) fail("{}: cannot create{}", context, hdf5_cause());
  if (H5Awrite(handle.get(), memory_type, value) < 0) fail("{}: write failed{}", context, hdf5_cause());
}

void Hdf5Writer::write_string_attribute(std::string_view object, std::string_view attribute,
                                        std::string_view value) {
  if (value.find('\0') != std::string_view::npos) {
    fail("{}: string values cannot contain NUL characters", attribute_context(name(), object, attribute));
  }
  const Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  if (!type.ok() || H5Tset_size(type.get(), H5T_VARIABLE) < 0 || H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0) {
    fail("{}: cannot set up the write{}", attribute_context(name(), object, attribute), hdf5_cause());
  }
  const std::string text(value);
  const char* data = text.c_str();
  write_attribute(object, attribute, type.get(), type.get(), &data);
}

void Hdf5Writer::write_int64_attribute(std::string_view object, std::string_view attribute,
                                       std::int64_t value) {
  write_attribute(object, attribute, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void Hdf5Writer::write_double_attribute(std::string_view object, std::string_view attribute, double value) {
  write_attribute(object, attribute, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

void Hdf5Writer::commit() {
  const hid_t file = id();
  const std::string temp = temp_path_.string();
  if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) fail("{}: cannot flush \"{}\"{}", name(), temp, hdf5_cause());
  if (!close()) fail("{}: cannot close \"{}\"{}", name(), temp, hdf5_cause());
  // Closing hands the data to the OS; fsync makes it durable before the rename publishes it, so a power loss
  // cannot leave the real name pointing at incomplete contents.
  if (!sync_path(temp_path_, O_RDONLY))
    fail("{}: cannot sync \"{}\": {}", name(), temp, std::strerror(errno));
  std::error_code ec;
  std::filesystem::rename(temp_path_, final_path_, ec);
  if (ec) fail("{}: cannot rename \"{}\" onto it: {}", name(), temp, ec.message());
  temp_path_.clear();
  // The rename itself is durable only once the directory is synced; some file systems refuse fsync on a
  // directory, and the data is already safe, so a failure here is not an error.
  sync_path(final_path_.has_parent_path() ? final_path_.parent_path() : ".", O_RDONLY | O_DIRECTORY);
}

}  // namespace race
