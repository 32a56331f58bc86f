// RAII access to HDF5 files (datasets and checkpoints) over the HDF5 C API: a read-only file, and a writer
// that writes to `<path>.tmp` and renames it onto `<path>` only in commit(), so a crash or an exception never
// leaves a half-written file under the real name.
//
// HDF5's own error-stack printing is switched off; every failure is a race::Error naming the file and the
// dataset or attribute, e.g. `train.h5: dataset "q" not found`. Object paths are absolute or relative to the
// root ("q", "/params/w"); groups on the way are created on demand when writing. Sizes are 64-bit throughout.
// The Debian HDF5 build is thread-safe (calls are serialized), so a file may be used from any one thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace race {

// A whole dataset in memory, row-major.
template <typename T>
struct ArrayData {
  std::vector<std::int64_t> shape;  // empty for a scalar dataset
  std::vector<T> values;
};

enum class ElementClass { integer, floating, string, other };

struct DatasetInfo {
  std::vector<std::int64_t> shape;  // empty for a scalar dataset
  ElementClass element_class = ElementClass::other;
  std::int64_t element_size = 0;  // bytes per element as stored
  bool is_signed = false;         // integers only
  std::string type_name;          // "uint16", "float32", "string", "compound", ...

  std::int64_t num_elements() const;
};

class Hdf5File {
 public:
  // Opens an existing file read-only. A missing file, a directory or a non-HDF5 file is a clear error.
  static Hdf5File open(const std::filesystem::path& path);

  Hdf5File(Hdf5File&& other) noexcept;
  Hdf5File& operator=(Hdf5File&& other) noexcept;
  Hdf5File(const Hdf5File&) = delete;
  Hdf5File& operator=(const Hdf5File&) = delete;
  virtual ~Hdf5File();

  // The file name used in error messages (the final path for a writer).
  const std::string& name() const { return name_; }

  bool has_dataset(std::string_view path) const;
  bool has_group(std::string_view path) const;
  // Whether `object` (a group or dataset; "/" for the root) exists and carries attribute `attribute`.
  bool has_attribute(std::string_view object, std::string_view attribute) const;

  DatasetInfo dataset_info(std::string_view dataset) const;

  // Accepts float32 or float64 storage (float64 is converted; a finite value beyond float32's range is an
  // error, infinities and NaN pass through).
  ArrayData<float> read_float32(std::string_view dataset) const;
  // Accept any integer storage; a stored value outside the requested type's range is an error.
  ArrayData<std::int32_t> read_int32(std::string_view dataset) const;
  ArrayData<std::int64_t> read_int64(std::string_view dataset) const;
  ArrayData<std::uint8_t> read_uint8(std::string_view dataset) const;
  ArrayData<std::uint16_t> read_uint16(std::string_view dataset) const;
  ArrayData<std::uint32_t> read_uint32(std::string_view dataset) const;
  ArrayData<std::uint64_t> read_uint64(std::string_view dataset) const;

  // Scalar attributes. Strings may be stored fixed- or variable-length (h5py writes the latter); integers
  // may have any integer storage that fits int64; doubles may be stored as any float or integer.
  std::string read_string_attribute(std::string_view object, std::string_view attribute) const;
  std::int64_t read_int64_attribute(std::string_view object, std::string_view attribute) const;
  double read_double_attribute(std::string_view object, std::string_view attribute) const;

 protected:
  Hdf5File(std::int64_t id, std::string name);
  // The open file's HDF5 id; an error once the file has been closed (a committed writer).
  std::int64_t id() const;
  // Closes the file if open; false if HDF5 reported a failure while closing.
  bool close() noexcept;

 private:
  std::int64_t id_ = -1;  // hid_t
  std::string name_;
};

class Hdf5Writer : public Hdf5File {
 public:
  // Creates (truncating) `<path>.tmp`; `path` itself is untouched until commit(). The directory must exist.
  static Hdf5Writer create(const std::filesystem::path& path);

  Hdf5Writer(Hdf5Writer&& other) noexcept;
  Hdf5Writer& operator=(Hdf5Writer&& other) noexcept;
  // Without a successful commit(), closes and deletes the temporary file.
  ~Hdf5Writer() override;

  // Writes a new dataset of `shape` (empty for a scalar) from row-major `values`; the element count must
  // match the shape and the dataset must not exist yet. Stored as little-endian float32 / intN / uintN.
  void write(std::string_view dataset, const std::vector<std::int64_t>& shape, std::span<const float> values);
  void write(std::string_view dataset, const std::vector<std::int64_t>& shape,
             std::span<const std::int32_t> values);
  void write(std::string_view dataset, const std::vector<std::int64_t>& shape,
             std::span<const std::int64_t> values);
  void write(std::string_view dataset, const std::vector<std::int64_t>& shape,
             std::span<const std::uint8_t> values);
  void write(std::string_view dataset, const std::vector<std::int64_t>& shape,
             std::span<const std::uint16_t> values);
  void write(std::string_view dataset, const std::vector<std::int64_t>& shape,
             std::span<const std::uint32_t> values);
  void write(std::string_view dataset, const std::vector<std::int64_t>& shape,
             std::span<const std::uint64_t> values);

  // Scalar attributes on `object` ("/" for the root); a missing object is created as a group, an existing
  // attribute of the same name is replaced. Strings are stored variable-length UTF-8 (no size limit; no NUL).
  void write_string_attribute(std::string_view object, std::string_view attribute, std::string_view value);
  void write_int64_attribute(std::string_view object, std::string_view attribute, std::int64_t value);
  void write_double_attribute(std::string_view object, std::string_view attribute, double value);

  // Flushes, closes, syncs the temporary file to disk and renames it onto the final path (replacing any
  // file there). The writer is closed afterwards.
  void commit();

  const std::filesystem::path& temp_path() const { return temp_path_; }

 private:
  Hdf5Writer(std::int64_t id, std::filesystem::path final_path, std::filesystem::path temp_path);
  template <typename T>
  void write_array(std::string_view dataset, const std::vector<std::int64_t>& shape,
                   std::span<const T> values);
  void write_attribute(std::string_view object, std::string_view attribute, std::int64_t file_type,
                       std::int64_t memory_type, const void* value);
  void discard() noexcept;

  std::filesystem::path final_path_;
  std::filesystem::path temp_path_;  // empty once committed or moved from: nothing to delete
};

}  // namespace race
