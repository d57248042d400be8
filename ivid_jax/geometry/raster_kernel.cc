// The triangle rasteriser of geometry/raster.py as XLA:CPU FFI kernels.
//
// One rasteriser (triangle setup, binning by row block, the z-test with the
// packed visibility key) serves two entry points:
//
// - IvidRasterize: `raster.rasterize` for a batch of meshes, one z-buffer per
//   mesh: the visible face, perspective-correct barycentrics, depth and facing
//   of every sample. The training warp uses it (`warp.render_textured`).
// - IvidAccumulate: what `render.rasterize_views` + `render.accumulate` +
//   `render.resolve` compute for a stack of grid meshes drawn into frames, each
//   view with its own z-buffer, shaded with the authors' aggregation weights and
//   accumulated over views. The sampler's conditions (`sampling/aggregate.py`)
//   and the exact fusion renderer (`rendering/fusion.py`) use it.
//
// Both compute, for meshes already projected to clip space, what the jnp code
// computes, in the same float32 operations and order, so the two agree to the
// last bit except where the angle weights' exp differs (XLA's and ExpNeg below,
// each within ~2 ulp). Why a kernel: the jnp path does its z-test by
// scatter-min and its shading by dozens of gathers per sample, which on a CPU
// is memory traffic; here a block of 8 rows is z-tested and shaded while its
// buffers are in cache. GPUs and TPUs keep the jnp path.
//
// Threads: (A) meshes' vertex data and triangle setups, dealt round-robin over
// threads; (B) row blocks dealt round-robin, each rasterised (and shaded for all
// views in view order, so the sums, and the result, do not depend on the thread
// count); barriers between.
//
// Compiled at first use by ivid_jax/geometry/raster_kernel.py with
// -ffp-contract=off (no fused multiply-adds, which XLA:CPU does not form either).

#include <algorithm>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <limits>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr uint32_t kEmpty = 0xFFFFFFFFu;
constexpr float kSpanEps = 1e-3f;
constexpr int kRowBlock = 8;  // rows per block: its buffers stay in cache over all views
// The z-test runs kLanes samples at a time (one vector); z-buffer rows are kLanes keys longer
// than the frame, so a span's last vector may run past the row's end into its padding.
constexpr int kLanes = 8;

// Keys of one row block: kRowBlock rows of `width` samples, each followed by kLanes of padding.
inline int64_t RowStride(int64_t width) { return width + kLanes; }

struct Setup {
  float a[3], b[3], c[3], ox[3], oy[3];
  float r[3], w[3];    // perspective weights and clip w of the corners (the resolve)
  float qa, qb, qc, s;
  int x0, x1, y0, y1;  // x0 > x1: not drawn
  int32_t id;          // the face
  bool tie[3];
};

// acos on [0, 1] (render.acos01): sqrt(1 - x) times a degree-7 polynomial.
inline float Acos01(float x) {
  constexpr float kCoeffs[8] = {1.5707963050f, -0.2145988016f, 0.0889789874f,
                                -0.0501743046f, 0.0308918810f, -0.0170881256f,
                                0.0066700901f, -0.0012624911f};
  float poly = 0.0f;
  for (int i = 7; i >= 0; --i) poly = poly * x + kCoeffs[i];
  return std::sqrt(1.0f - x) * poly;
}

// exp(x) for x in [-87, 0] (the weights use [-50, 0]), within 2 ulp of libm's: Cephes'
// expf (range reduction by ln 2 in two parts, degree-6 polynomial), written without
// calls or branches so that loops over it vectorise.
inline float ExpNeg(float x) {
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  return e * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

inline float Sign(float v) { return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f); }

// Per-vertex part of raster._setup (window coordinates, the near-plane test, the
// perspective division), computed once per vertex rather than once per face corner.
struct VertexSetup {
  float hx, hy, hw, px, py, inv_w;
  bool ok, finite;
};

void PrepareVertices(const float* clip, int64_t num_verts, int width, int height, float near,
                     VertexSetup* out) {
  const float half_w = 0.5f * static_cast<float>(width);
  const float half_h = 0.5f * static_cast<float>(height);
  for (int64_t i = 0; i < num_verts; ++i) {
    const float* v = clip + 4 * i;
    VertexSetup& o = out[i];
    o.hx = (v[0] + v[3]) * half_w;
    o.hy = (v[3] - v[1]) * half_h;
    o.hw = v[3];
    o.finite = std::isfinite(v[0]) && std::isfinite(v[1]) && std::isfinite(v[2]) &&
               std::isfinite(v[3]);
    o.ok = (o.hw >= near) && o.finite;
    const float safe = o.ok ? o.hw : 1.0f;
    o.px = o.hx / safe;
    o.py = o.hy / safe;
    o.inv_w = 1.0f / safe;  // used only where every corner is ok (screen mode)
  }
}

// Triangle setup of raster._setup for one face (screen width x height, near plane).
void FaceSetup(const VertexSetup* verts, const int32_t* ids, bool cull, int width, int height,
               float near, Setup* out) {
  float hx[3], hy[3], hw[3], px[3], py[3];
  bool ok[3];
  for (int k = 0; k < 3; ++k) {
    const VertexSetup& v = verts[ids[k]];
    hx[k] = v.hx;
    hy[k] = v.hy;
    hw[k] = v.hw;
    ok[k] = v.ok;
    px[k] = v.px;
    py[k] = v.py;
  }
  const bool finite =
      std::isfinite(hx[0] + hx[1] + hx[2] + hy[0] + hy[1] + hy[2] + hw[0] + hw[1] + hw[2]);
  const bool screen = ok[0] && ok[1] && ok[2];
  for (int k = 0; k < 3; ++k) {
    const int i = (k + 1) % 3, j = (k + 2) % 3;
    if (screen) {
      const bool swap = ids[i] > ids[j];
      const float sgn = swap ? -1.0f : 1.0f;
      const float lo_x = swap ? px[j] : px[i], hi_x = swap ? px[i] : px[j];
      const float lo_y = swap ? py[j] : py[i], hi_y = swap ? py[i] : py[j];
      out->a[k] = -sgn * (hi_y - lo_y);
      out->b[k] = sgn * (hi_x - lo_x);
      out->c[k] = 0.0f;
      out->ox[k] = lo_x;
      out->oy[k] = lo_y;
    } else {
      out->a[k] = hy[i] * hw[j] - hw[i] * hy[j];
      out->b[k] = hw[i] * hx[j] - hx[i] * hw[j];
      out->c[k] = hx[i] * hy[j] - hy[i] * hx[j];
      out->ox[k] = 0.0f;
      out->oy[k] = 0.0f;
    }
  }
  // Twice the signed screen area (screen mode) or det(h_0, h_1, h_2) (homogeneous).
  const float den =
      screen ? (px[1] - px[0]) * (py[2] - py[0]) - (py[1] - py[0]) * (px[2] - px[0])
             : hx[0] * (hy[1] * hw[2] - hw[1] * hy[2]) - hy[0] * (hx[1] * hw[2] - hw[1] * hx[2]) +
                   hw[0] * (hx[1] * hy[2] - hy[1] * hx[2]);
  float s = finite ? Sign(den) : 0.0f;
  if (cull && s > 0.0f) s = 0.0f;
  out->s = s;
  for (int k = 0; k < 3; ++k) {
    out->tie[k] = (s * out->a[k] > 0.0f) || ((s * out->a[k] == 0.0f) && (s * out->b[k] > 0.0f));
    out->r[k] = screen ? verts[ids[k]].inv_w : 1.0f;
    out->w[k] = hw[k];
  }
  const float* r = out->r;
  const float inv_den = 1.0f / (s != 0.0f ? den : 1.0f);
  out->qa = (out->a[0] * r[0] + out->a[1] * r[1] + out->a[2] * r[2]) * inv_den;
  out->qb = (out->b[0] * r[0] + out->b[1] * r[1] + out->b[2] * r[2]) * inv_den;
  float qc = 0.0f;
  for (int k = 0; k < 3; ++k) {
    qc = qc + (out->c[k] - out->a[k] * out->ox[k] - out->b[k] * out->oy[k]) * r[k];
  }
  out->qc = qc * inv_den;

  const float big = 1e30f;
  float xmin = big, ymin = big, xmax = -big, ymax = -big;
  bool any_pt = false;
  for (int k = 0; k < 3; ++k) {
    if (ok[k]) {
      xmin = std::min(xmin, px[k]);
      xmax = std::max(xmax, px[k]);
      ymin = std::min(ymin, py[k]);
      ymax = std::max(ymax, py[k]);
    }
    const int i = k, j = (k + 1) % 3;
    const bool crosses = (hw[i] - near) * (hw[j] - near) < 0.0f;
    if (crosses) {
      const float t = (near - hw[i]) / (hw[j] - hw[i]);
      const float cx = (hx[i] + t * (hx[j] - hx[i])) / near;
      const float cy = (hy[i] + t * (hy[j] - hy[i])) / near;
      xmin = std::min(xmin, cx);
      xmax = std::max(xmax, cx);
      ymin = std::min(ymin, cy);
      ymax = std::max(ymax, cy);
    }
    any_pt = any_pt || ok[k] || crosses;
  }
  const float fw = static_cast<float>(width), fh = static_cast<float>(height);
  const float x0 = std::clamp(std::ceil(xmin - 0.5f - kSpanEps), 0.0f, fw);
  const float x1 = std::clamp(std::floor(xmax - 0.5f + kSpanEps), -1.0f, fw - 1.0f);
  const float y0 = std::clamp(std::ceil(ymin - 0.5f - kSpanEps), 0.0f, fh);
  const float y1 = std::clamp(std::floor(ymax - 0.5f + kSpanEps), -1.0f, fh - 1.0f);
  // NaN compares false: such faces are not drawn (and never cast to int).
  const bool drawable = (s != 0.0f) && any_pt && (x0 <= x1) && (y0 <= y1);
  if (drawable) {
    out->x0 = static_cast<int>(x0);
    out->x1 = static_cast<int>(x1);
    out->y0 = static_cast<int>(y0);
    out->y1 = static_cast<int>(y1);
  } else {
    out->x0 = 1;
    out->x1 = 0;
    out->y0 = 1;
    out->y1 = 0;
  }
}

// raster._inside and raster._candidate at one sample.
inline bool Covers(const Setup& f, float px, float py, float inv_near, float inv_far,
                   float* q) {
  for (int k = 0; k < 3; ++k) {
    const float e = f.a[k] * (px - f.ox[k]) + f.b[k] * (py - f.oy[k]) + f.c[k];
    if (!((f.s * e > 0.0f) || ((e == 0.0f) && f.tie[k]))) return false;
  }
  *q = f.qa * px + f.qb * py + f.qc;
  return (*q >= inv_far) && (*q <= inv_near);
}

// The bit split of the packed visibility key (raster._key_params): quantised disparity
// above, the face's rank among the drawn faces below (in face order, so ties still go to
// the lower face index).
struct KeyBits {
  explicit KeyBits(int64_t num_faces) {
    id_bits = 0;
    while ((num_faces >> id_bits) > 0) ++id_bits;
    id_bits = std::max(id_bits, 1);
    levels = static_cast<float>((1ull << (32 - id_bits)) - 1ull);
    id_mask = (1u << id_bits) - 1u;
  }
  int id_bits;
  float levels;
  uint32_t id_mask;
};

// One mesh in one camera: its drawn faces' setups (in face order), binned by the row
// blocks their bounding boxes touch, and its visibility key's depth range.
struct BinnedMesh {
  std::vector<Setup> setups;
  std::vector<int32_t> corners;  // [3 x drawn]: the drawn faces' vertex ids, by rank
  std::vector<int64_t> start;    // [blocks + 1]
  std::vector<int32_t> bins;     // indices into setups, by block
  std::vector<VertexSetup> vertex_setups;
  float q_hi = 0.0f, scale = 0.0f;

  // clip [P, 4], faces [T, 3]; cull(i): face i is culled where it faces away.
  template <typename Cull>
  void Build(const float* clip, int64_t num_verts, const int32_t* faces, int64_t num_faces,
             const Cull& cull, int width, int height, float near,
             float far, float levels, int64_t num_blocks, std::vector<int32_t>* face_blocks) {
    float wmin = std::numeric_limits<float>::infinity();
    float wmax = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < num_verts; ++i) {
      const float w = clip[4 * i + 3];
      const bool ok = std::isfinite(w);
      wmin = std::min(wmin, ok ? w : far);
      wmax = std::max(wmax, ok ? w : near);
    }
    const float w_min = std::clamp(wmin, near, far);
    const float w_max = std::clamp(wmax, near, far);
    q_hi = 1.0f / w_min;
    const float q_lo = 1.0f / w_max;
    scale = levels / std::max(q_hi - q_lo, 1e-12f);
    vertex_setups.resize(num_verts);
    PrepareVertices(clip, num_verts, width, height, near, vertex_setups.data());
    // A counting sort of (face, block) pairs.
    face_blocks->resize(2 * num_faces);
    start.assign(num_blocks + 1, 0);
    setups.resize(num_faces);
    corners.resize(3 * num_faces);
    int64_t drawn = 0;
    for (int64_t i = 0; i < num_faces; ++i) {
      const int32_t* ids = faces + 3 * i;
      Setup& setup = setups[drawn];
      FaceSetup(vertex_setups.data(), ids, cull(i), width, height, near, &setup);
      if (setup.x0 > setup.x1) continue;
      setup.id = static_cast<int32_t>(i);
      for (int k = 0; k < 3; ++k) corners[3 * drawn + k] = ids[k];
      const int32_t b0 = setup.y0 / kRowBlock, b1 = setup.y1 / kRowBlock;
      (*face_blocks)[2 * drawn] = b0;
      (*face_blocks)[2 * drawn + 1] = b1;
      for (int32_t b = b0; b <= b1; ++b) ++start[b + 1];
      ++drawn;
    }
    for (int64_t b = 0; b < num_blocks; ++b) start[b + 1] += start[b];
    bins.resize(start[num_blocks]);
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < drawn; ++i) {
      for (int32_t b = (*face_blocks)[2 * i]; b <= (*face_blocks)[2 * i + 1]; ++b) {
        bins[fill[b]++] = static_cast<int32_t>(i);
      }
    }
  }

  // The z-test of samples [xa, xb] of one row (centre height py) against face f: row[x] =
  // min(row[x], key) where f covers the sample. Written so that the compiler vectorises it
  // (sheets at depth discontinuities span hundreds of samples a row, and a stack of views
  // draws many of them); the row's terms are hoisted, which leaves every sum in the order
  // raster._edges and raster._candidate evaluate it.
  void ZTestSpan(const Setup& f, int xa, int xb, float py, float inv_near, float inv_far,
                 const KeyBits& kb, uint32_t rank, uint32_t* row) const {
    const float a0 = f.a[0], a1 = f.a[1], a2 = f.a[2];
    const float ox0 = f.ox[0], ox1 = f.ox[1], ox2 = f.ox[2];
    const float r0 = f.b[0] * (py - f.oy[0]), r1 = f.b[1] * (py - f.oy[1]),
                r2 = f.b[2] * (py - f.oy[2]);
    const float c0 = f.c[0], c1 = f.c[1], c2 = f.c[2];
    const float s = f.s, qa = f.qa, q_row = f.qb * py, qc = f.qc;
    const bool t0 = f.tie[0], t1 = f.tie[1], t2 = f.tie[2];
    const float hi = q_hi, sc = scale, levels = kb.levels;
    const int id_bits = kb.id_bits;
    // Whole vectors of kLanes samples from xa (a fixed trip count the compiler turns into
    // vector code; a loop over the exact span would run its few samples a row in scalar
    // code); samples past xb are masked, and their keys land in the row's padding unchanged.
    for (int x0 = xa; x0 <= xb; x0 += kLanes) {
      uint32_t* __restrict out = row + x0;
      for (int l = 0; l < kLanes; ++l) {
        const float px = static_cast<float>(x0 + l) + 0.5f;
        const float v0 = a0 * (px - ox0) + r0 + c0;
        const float v1 = a1 * (px - ox1) + r1 + c1;
        const float v2 = a2 * (px - ox2) + r2 + c2;
        const float q = qa * px + q_row + qc;
        const bool inside = ((s * v0 > 0.0f) | ((v0 == 0.0f) & t0)) &
                            ((s * v1 > 0.0f) | ((v1 == 0.0f) & t1)) &
                            ((s * v2 > 0.0f) | ((v2 == 0.0f) & t2)) & (q >= inv_far) &
                            (q <= inv_near) & (x0 + l <= xb);
        // std::clamp(floor(.), 0, levels); NaN only where `inside` is false.
        float qq = std::floor((hi - q) * sc);
        qq = qq < 0.0f ? 0.0f : qq;
        qq = levels < qq ? levels : qq;
        const uint32_t key = (static_cast<uint32_t>(qq) << id_bits) | rank;
        const uint32_t cand = inside ? key : kEmpty;
        out[l] = out[l] < cand ? out[l] : cand;
      }
    }
  }

  // The z-test of rows [y_lo, y_hi) of block blk into zbuf (row y_lo first, RowStride(width) keys
  // a row, cleared to kEmpty): the minimum key of every sample.
  void Rasterize(int64_t blk, int64_t y_lo, int64_t y_hi, int64_t width, float inv_near,
                 float inv_far, const KeyBits& kb, uint32_t* zbuf) const {
    for (int64_t k = start[blk]; k < start[blk + 1]; ++k) {
      const Setup& f = setups[bins[k]];
      const uint32_t rank = static_cast<uint32_t>(bins[k]);
      const bool wide = f.x1 - f.x0 >= 8;
      // Wide faces (sheets, skirts, magnified surfaces) test a conservative span per row: each
      // edge crosses zero at x_c(py) = k0 + k1 py (double, widened by 1e-2 px); the float test
      // decides. Sheets are tall slivers with a few samples a row, so this is per-row work.
      double k0[3] = {0.0, 0.0, 0.0}, k1[3] = {0.0, 0.0, 0.0};
      int side[3] = {0, 0, 0};  // +1: the edge bounds the span below, -1: above, 0: neither
      if (wide) {
        for (int e = 0; e < 3; ++e) {
          const double a = f.a[e], b = f.b[e];
          if (a == 0.0) continue;
          const double inv = 1.0 / a;
          k1[e] = -b * inv;
          k0[e] = f.ox[e] + (b * f.oy[e] - static_cast<double>(f.c[e])) * inv;
          side[e] = f.s * a > 0 ? 1 : -1;
        }
      }
      const int y_begin = static_cast<int>(std::max<int64_t>(f.y0, y_lo));
      const int y_end = static_cast<int>(std::min<int64_t>(f.y1, y_hi - 1));
      // The span of every row lies in [xlo, xhi]: each bounding edge is linear in y, so its
      // extreme over the block's rows is at the first or last row, and the span's lower bound
      // (the largest lower edge) is at least the largest of the lower edges' minima (likewise
      // above). A sliver that fits one vector here is tested without per-row spans.
      int xlo = f.x0, xhi = f.x1;
      if (wide) {
        const double pys[2] = {y_begin + 0.5, y_end + 0.5};
        double lo = xlo, hi = xhi;
        for (int e = 0; e < 3; ++e) {
          if (side[e] == 0) continue;
          const double c0 = k0[e] + k1[e] * pys[0], c1 = k0[e] + k1[e] * pys[1];
          if (side[e] > 0) lo = std::max(lo, std::ceil(std::min(c0, c1) - 0.5 - 1e-2));
          else hi = std::min(hi, std::floor(std::max(c0, c1) - 0.5 + 1e-2));
        }
        xlo = static_cast<int>(std::max<double>(lo, f.x0));
        xhi = static_cast<int>(std::min<double>(hi, f.x1));
      }
      const bool per_row = wide && xhi - xlo >= kLanes;
      for (int y = y_begin; y <= y_end; ++y) {
        const float py = static_cast<float>(y) + 0.5f;
        int xa = xlo, xb = xhi;
        if (per_row) {
          double lower = xa, upper = xb;
          for (int e = 0; e < 3; ++e) {
            // Sample centres are x + 0.5.
            const double x_c = k0[e] + k1[e] * py;
            if (side[e] > 0) lower = std::max(lower, std::ceil(x_c - 0.5 - 1e-2));
            else if (side[e] < 0) upper = std::min(upper, std::floor(x_c - 0.5 + 1e-2));
          }
          xa = static_cast<int>(std::max<double>(lower, f.x0));
          xb = static_cast<int>(std::min<double>(upper, f.x1));
        }
        ZTestSpan(f, xa, xb, py, inv_near, inv_far, kb, rank,
                  zbuf + (y - y_lo) * RowStride(width));
      }
    }
  }
};

// Scratch kept between calls: the meshes' setups are ~100 MB for a 27-view stack, and
// allocating (and page-faulting) them anew on every call cost more than the setup itself.
template <typename T>
class Pool {
 public:
  std::unique_ptr<T> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return std::make_unique<T>();
    std::unique_ptr<T> t = std::move(free_.back());
    free_.pop_back();
    return t;
  }
  void Give(std::unique_ptr<T> t) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(t));
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<T>> free_;
};

// Runs work(tid) on num_threads threads (the calling one included).
template <typename Fn>
void RunThreads(int num_threads, Fn work) {
  std::vector<std::thread> threads;
  for (int t = 1; t < num_threads; ++t) threads.emplace_back([&work, t] { work(t); });
  work(0);
  for (auto& th : threads) th.join();
}

// ------------------------------------------------------------------------------------------
// IvidRasterize: raster.rasterize, one z-buffer per mesh.

struct RasterParams {
  int64_t batch, num_verts, num_faces, height, width;
  float near, far, inv_near, inv_far;
  const float* clip;     // [B, P, 4]
  const int32_t* faces;  // [B, T, 3]
  const bool* cull;      // [B, T] or null
  int32_t* out_face;     // [B, H, W]
  float* out_bary;       // [B, H, W, 3]
  float* out_depth;      // [B, H, W]
  bool* out_front;       // [B, H, W]
};

class Rasterizer {
 public:
  Rasterizer(const RasterParams& p, int num_threads)
      : p_(p), nt_(num_threads), barrier_(num_threads), kb_(p.num_faces),
        num_blocks_((p.height + kRowBlock - 1) / kRowBlock) {}

  void Run() {
    static Pool<std::vector<BinnedMesh>> pool;
    std::unique_ptr<std::vector<BinnedMesh>> meshes = pool.Take();
    meshes->resize(nt_);
    meshes_ = meshes.get();
    RunThreads(nt_, [this](int t) { Work(t); });
    pool.Give(std::move(meshes));
  }

 private:
  // Meshes go in rounds of nt_: each thread sets one up, then all share its row blocks.
  void Work(int tid) {
    std::vector<uint32_t> zbuf(kRowBlock * RowStride(p_.width));
    std::vector<int32_t> face_blocks;
    for (int64_t first = 0; first < p_.batch; first += nt_) {
      const int64_t mine = first + tid;
      if (mine < p_.batch) {
        const bool* cull = p_.cull ? p_.cull + mine * p_.num_faces : nullptr;
        (*meshes_)[tid].Build(p_.clip + mine * p_.num_verts * 4, p_.num_verts,
                           p_.faces + mine * p_.num_faces * 3, p_.num_faces,
                           [cull](int64_t i) { return cull != nullptr && cull[i]; },
                           static_cast<int>(p_.width), static_cast<int>(p_.height), p_.near,
                           p_.far, kb_.levels, num_blocks_, &face_blocks);
      }
      barrier_.arrive_and_wait();
      for (int64_t b = first; b < std::min<int64_t>(first + nt_, p_.batch); ++b) {
        const BinnedMesh& mesh = (*meshes_)[b - first];
        for (int64_t blk = tid; blk < num_blocks_; blk += nt_) {
          const int64_t y_lo = blk * kRowBlock;
          const int64_t y_hi = std::min<int64_t>(y_lo + kRowBlock, p_.height);
          std::fill(zbuf.begin(), zbuf.end(), kEmpty);
          mesh.Rasterize(blk, y_lo, y_hi, p_.width, p_.inv_near, p_.inv_far, kb_, zbuf.data());
          Resolve(b, mesh, y_lo, y_hi, zbuf.data());
        }
      }
      barrier_.arrive_and_wait();
    }
  }

  // raster.rasterize's resolve: the winning face's barycentrics, depth and facing.
  void Resolve(int64_t b, const BinnedMesh& mesh, int64_t y_lo, int64_t y_hi,
               const uint32_t* zbuf) const {
    const int64_t W = p_.width;
    for (int64_t y = y_lo; y < y_hi; ++y) {
      const float py = static_cast<float>(y) + 0.5f;
      const int64_t base = (b * p_.height + y) * W;
      for (int64_t x = 0; x < W; ++x) {
        const uint32_t key = zbuf[(y - y_lo) * RowStride(W) + x];
        const int64_t o = base + x;
        if (key == kEmpty) {
          p_.out_face[o] = -1;
          p_.out_bary[3 * o] = p_.out_bary[3 * o + 1] = p_.out_bary[3 * o + 2] = 0.0f;
          p_.out_depth[o] = p_.far;
          p_.out_front[o] = false;
          continue;
        }
        const Setup& f = mesh.setups[key & kb_.id_mask];
        const float px = static_cast<float>(x) + 0.5f;
        // raster._fragment
        float we[3];
        for (int k = 0; k < 3; ++k) {
          const float e = f.a[k] * (px - f.ox[k]) + f.b[k] * (py - f.oy[k]) + f.c[k];
          we[k] = e * f.r[k];
        }
        const float den = we[0] + we[1] + we[2];
        const float inv = 1.0f / (den != 0.0f ? den : 1.0f);
        const float lam[3] = {we[0] * inv, we[1] * inv, we[2] * inv};
        p_.out_face[o] = f.id;
        for (int k = 0; k < 3; ++k) p_.out_bary[3 * o + k] = lam[k];
        p_.out_depth[o] = lam[0] * f.w[0] + lam[1] * f.w[1] + lam[2] * f.w[2];
        p_.out_front[o] = f.s < 0.0f;
      }
    }
  }

  const RasterParams& p_;
  const int nt_;
  std::barrier<> barrier_;
  const KeyBits kb_;
  const int64_t num_blocks_;
  std::vector<BinnedMesh>* meshes_ = nullptr;  // one per thread: the round's meshes
};

ffi::Error RasterizeImpl(ffi::Buffer<ffi::F32> clip, ffi::Buffer<ffi::S32> faces,
                         ffi::Buffer<ffi::PRED> cull, int64_t height, int64_t width,
                         int64_t num_threads, float near, float far, float inv_near,
                         float inv_far, ffi::ResultBuffer<ffi::S32> face,
                         ffi::ResultBuffer<ffi::F32> bary, ffi::ResultBuffer<ffi::F32> depth,
                         ffi::ResultBuffer<ffi::PRED> front) {
  auto cd = clip.dimensions();
  auto fd = faces.dimensions();
  auto kd = cull.dimensions();
  if (cd.size() != 3 || cd[2] != 4 || fd.size() != 3 || fd[2] != 3 || fd[0] != cd[0] ||
      kd.size() != 2 || kd[0] != fd[0] || kd[1] != fd[1]) {
    return ffi::Error::InvalidArgument("ivid_rasterize: inconsistent input shapes");
  }
  RasterParams p;
  p.batch = cd[0];
  p.num_verts = cd[1];
  p.num_faces = fd[1];
  p.height = height;
  p.width = width;
  p.near = near;
  p.far = far;
  p.inv_near = inv_near;
  p.inv_far = inv_far;
  p.clip = clip.typed_data();
  p.faces = faces.typed_data();
  p.cull = cull.typed_data();
  p.out_face = face->typed_data();
  p.out_bary = bary->typed_data();
  p.out_depth = depth->typed_data();
  p.out_front = front->typed_data();
  if (p.num_faces >= (1ll << 22)) {
    return ffi::Error::InvalidArgument("ivid_rasterize: too many faces per mesh");
  }
  int nt = static_cast<int>(std::max<int64_t>(1, num_threads));
  nt = std::min<int>(nt, static_cast<int>((height + kRowBlock - 1) / kRowBlock));
  Rasterizer rasterizer(p, nt);
  rasterizer.Run();
  return ffi::Error::Success();
}

// ------------------------------------------------------------------------------------------
// IvidAccumulate: every view's mesh drawn into each frame with its own z-buffer, shaded
// with the aggregation weights and accumulated over views (render.rasterize_views,
// render.accumulate and render.resolve).

struct AccumParams {
  int64_t num_frames, num_views, num_verts, num_faces, tex, size;
  float near, far, inv_near, inv_far, render_near, tan_half, two_over_size;
  const float* clip;      // [F, V, P, 4]
  const float* targets;   // [F, 4, 4]
  const int32_t* faces;   // [V, T, 3]
  const float* normals;   // [V, P, 3]
  const float* uv;        // [V, P, 2]
  const float* flags;     // [V, P, 3]
  const float* textures;  // [V, N, N, 3]
  const float* centers;   // [V, 3]
  const int32_t* valid;   // [V]
  float* out_color;       // [F, S, S, 3]
  float* out_depth;       // [F, S, S]
  int32_t* out_coverage;  // [F, S, S]: bit 0 depth-valid fragments, bit 1 colour-valid ones
};

// Per-vertex data the shading reads, packed so a corner is one cache line.
struct Vertex {
  float hx, hy, w;   // window-scaled clip x, y (as raster.resolve_fragments) and clip w
  float tu, tv;      // texel code of the uv, decoded (render._interpolate_grid_attributes)
  float n[3];        // world normal
  float flag[3];     // (edge, padding, eroded) > 0.5, as 0 / 1
};

// One sample's accumulator (render.Accumulator).
struct Acc {
  float color[3], weight, disparity, low_depth, low_color[3];
  int32_t depth_count, color_count;
};

// One row's visible fragments of one view, structure-of-arrays for the weight pass.
struct RowScratch {
  explicit RowScratch(int64_t size)
      : x(size), texel(size), forced(size), eroded(size), depth(size), w(size),
        n{std::vector<float>(size), std::vector<float>(size), std::vector<float>(size)},
        d{std::vector<float>(size), std::vector<float>(size), std::vector<float>(size)} {}
  std::vector<int32_t> x, texel, forced, eroded;
  std::vector<float> depth, w;
  std::vector<float> n[3], d[3];  // interpolated normal; camera centre minus sample position
};

class Accumulator {
 public:
  Accumulator(const AccumParams& p, int num_threads)
      : p_(p), nt_(num_threads), barrier_(num_threads), kb_(p.num_faces),
        num_blocks_((p.size + kRowBlock - 1) / kRowBlock) {}

  void Run() {
    static Pool<Scratch> pool;
    std::unique_ptr<Scratch> scratch = pool.Take();
    scratch->vertices.resize(p_.num_views * p_.num_verts);
    scratch->meshes.resize(p_.num_views);
    vertices_ = scratch->vertices.data();
    meshes_ = scratch->meshes.data();
    RunThreads(nt_, [this](int t) { Work(t); });
    pool.Give(std::move(scratch));
  }

 private:
  void Work(int tid) {
    std::vector<Acc> acc(kRowBlock * p_.size);
    std::vector<uint32_t> zbuf(kRowBlock * RowStride(p_.size), kEmpty);
    std::vector<int32_t> face_blocks;
    RowScratch rs(p_.size);
    for (int64_t f = 0; f < p_.num_frames; ++f) {
      // (A) per view: vertex data and the binned triangle setups; views dealt round-robin.
      for (int64_t v = tid; v < p_.num_views; v += nt_) {
        if (p_.valid[v]) PrepareView(f, v, &face_blocks);
      }
      barrier_.arrive_and_wait();
      // (B) row blocks, dealt round-robin: every view drawn and shaded into the block's
      // accumulators, which stay in cache; views in index order, as the jnp loop.
      for (int64_t blk = tid; blk < num_blocks_; blk += nt_) {
        const int64_t y_lo = blk * kRowBlock, y_hi = std::min<int64_t>(y_lo + kRowBlock, p_.size);
        std::fill(acc.begin(), acc.end(), Acc{});
        for (int64_t v = 0; v < p_.num_views; ++v) {
          if (!p_.valid[v]) continue;
          meshes_[v].Rasterize(blk, y_lo, y_hi, p_.size, p_.inv_near, p_.inv_far, kb_,
                               zbuf.data());
          Shade(f, v, y_lo, y_hi, zbuf.data(), acc.data(), &rs);
        }
        Resolve(f, y_lo, y_hi, acc.data());
      }
      barrier_.arrive_and_wait();
    }
  }

  const float* Clip(int64_t frame, int64_t v) const {
    return p_.clip + ((frame * p_.num_views + v) * p_.num_verts) * 4;
  }

  void PrepareView(int64_t frame, int64_t v, std::vector<int32_t>* face_blocks) {
    const float* clip = Clip(frame, v);
    const float half = 0.5f * static_cast<float>(p_.size);
    const float two_n = 2.0f * static_cast<float>(p_.tex);
    const float* normals = p_.normals + v * p_.num_verts * 3;
    const float* uvs = p_.uv + v * p_.num_verts * 2;
    const float* vflags = p_.flags + v * p_.num_verts * 3;
    Vertex* out = vertices_ + v * p_.num_verts;
    for (int64_t i = 0; i < p_.num_verts; ++i) {
      const float* c = clip + 4 * i;
      Vertex& o = out[i];
      o.hx = (c[0] + c[3]) * half;
      o.hy = (c[3] - c[1]) * half;
      o.w = c[3];
      const int32_t tu = static_cast<int32_t>(std::nearbyint(two_n * uvs[2 * i]));
      const int32_t tv = static_cast<int32_t>(std::nearbyint(two_n * uvs[2 * i + 1]));
      const int32_t code = tu + (tv << 10);
      o.tu = static_cast<float>(code & 1023);
      o.tv = static_cast<float>(code >> 10);
      for (int k = 0; k < 3; ++k) {
        o.n[k] = normals[3 * i + k];
        o.flag[k] = vflags[3 * i + k] > 0.5f ? 1.0f : 0.0f;
      }
    }
    const int32_t* faces = p_.faces + v * p_.num_faces * 3;
    // Back-facing padding triangles are culled (render.rasterize_views' face_padding).
    auto cull = [faces, vflags](int64_t i) {
      const int32_t* ids = faces + 3 * i;
      return vflags[3 * ids[0] + 1] > 0.0f || vflags[3 * ids[1] + 1] > 0.0f ||
             vflags[3 * ids[2] + 1] > 0.0f;
    };
    meshes_[v].Build(clip, p_.num_verts, faces, p_.num_faces, cull, static_cast<int>(p_.size),
                     static_cast<int>(p_.size), p_.near, p_.far, kb_.levels, num_blocks_,
                     face_blocks);
  }

  // Shades a block's visible fragments of view v into its accumulators, a row at a time in
  // three passes: (1) per fragment, barycentrics and the interpolated attributes, (2) the
  // angle weights of the whole row (no branches, so the compiler vectorises the square
  // roots, the acos polynomial and the exp), (3) the accumulation.
  void Shade(int64_t frame, int64_t v, int64_t y_lo, int64_t y_hi, uint32_t* zbuf, Acc* acc,
             RowScratch* rs) const {
    const int64_t S = p_.size, N = p_.tex;
    const int32_t* corners = meshes_[v].corners.data();
    const Vertex* verts = vertices_ + v * p_.num_verts;
    const float* tex = p_.textures + v * N * N * 3;
    const float* center = p_.centers + 3 * v;
    const float* T = p_.targets + 16 * frame;
    const float two_n = 2.0f * static_cast<float>(N);
    const float n_f = static_cast<float>(N);
    for (int64_t y = y_lo; y < y_hi; ++y) {
      const float py = static_cast<float>(y) + 0.5f;
      const float cy = py * p_.two_over_size - 1.0f;
      uint32_t* zrow = zbuf + (y - y_lo) * RowStride(S);
      Acc* arow = acc + (y - y_lo) * S;
      int m = 0;
      for (int64_t x = 0; x < S; ++x) {
        const uint32_t key = zrow[x];
        if (key == kEmpty) continue;
        zrow[x] = kEmpty;
        const int32_t* ids = corners + 3 * static_cast<int64_t>(key & kb_.id_mask);
        const Vertex* c[3] = {verts + ids[0], verts + ids[1], verts + ids[2]};
        const float px = static_cast<float>(x) + 0.5f;
        // raster.resolve_fragments (corners translated to the sample).
        float hxs[3], hys[3];
        for (int k = 0; k < 3; ++k) {
          hxs[k] = c[k]->hx - px * c[k]->w;
          hys[k] = c[k]->hy - py * c[k]->w;
        }
        float e[3];
        for (int k = 0; k < 3; ++k) {
          const int i = (k + 1) % 3, j = (k + 2) % 3;
          e[k] = hxs[i] * hys[j] - hys[i] * hxs[j];
        }
        const float den = e[0] + e[1] + e[2];
        // Back faces: weight 0 and black; the sums they would add to are unchanged.
        if (!(den < 0.0f)) continue;
        const float inv = 1.0f / den;
        const float lam[3] = {e[0] * inv, e[1] * inv, e[2] * inv};
        const float depth = lam[0] * c[0]->w + lam[1] * c[1]->w + lam[2] * c[2]->w;
        // render._interpolate_grid_attributes
        float u = 0.0f, vv = 0.0f;
        float fl[3] = {0.0f, 0.0f, 0.0f};
        float nrm[3] = {0.0f, 0.0f, 0.0f};
        for (int k = 0; k < 3; ++k) {
          u = u + lam[k] * c[k]->tu;
          vv = vv + lam[k] * c[k]->tv;
          for (int d = 0; d < 3; ++d) {
            fl[d] = fl[d] + lam[k] * c[k]->flag[d];
            nrm[d] = nrm[d] + lam[k] * c[k]->n[d];
          }
        }
        u = u / two_n;
        vv = vv / two_n;
        // warp.texture_nearest
        const int64_t col = static_cast<int64_t>(std::clamp(std::floor(u * n_f), 0.0f, n_f - 1.0f));
        const int64_t trow = static_cast<int64_t>(std::clamp(std::floor(vv * n_f), 0.0f, n_f - 1.0f));
        // render._sample_positions
        const float cx = px * p_.two_over_size - 1.0f;
        const float sx = cx * p_.tan_half * depth;
        const float sy = -cy * p_.tan_half * depth;
        const float rel[3] = {sx - T[3], sy - T[7], -depth - T[11]};
        float pos[3];
        for (int i = 0; i < 3; ++i) {
          pos[i] = T[i] * rel[0] + T[4 + i] * rel[1] + T[8 + i] * rel[2];
        }
        rs->x[m] = static_cast<int32_t>(x);
        rs->texel[m] = static_cast<int32_t>((trow * N + col) * 3);
        rs->depth[m] = depth;
        for (int d = 0; d < 3; ++d) {
          rs->n[d][m] = nrm[d];
          rs->d[d][m] = center[d] - pos[d];
        }
        // Edge and padding fragments get 1e-16 whatever their angle; eroded ones 1e-8 times it.
        rs->forced[m] = (fl[1] > 0.001f || fl[0] > 0.999f) ? 1 : 0;
        rs->eroded[m] = fl[2] >= 0.999f ? 1 : 0;
        ++m;
      }
      // render.aggregation_weight
      WeightPass(m, rs);
      // render.accumulate
      for (int i = 0; i < m; ++i) {
        Acc& a = arow[rs->x[i]];
        const float w = rs->w[i], depth = rs->depth[i];
        const float* texel = tex + rs->texel[i];
        for (int d = 0; d < 3; ++d) a.color[d] += w * texel[d];
        a.weight += w;
        a.color_count += w > 1e-6f ? 1 : 0;
        if (w > 1e-14f) {
          a.disparity += 1.0f / depth;
          a.depth_count += 1;
        } else if (depth > a.low_depth) {
          a.low_depth = depth;
          for (int d = 0; d < 3; ++d) a.low_color[d] = texel[d];
        }
      }
    }
  }

  // render.aggregation_weight of a row's fragments: w[i] from n, d, eroded, forced.
  static void WeightPass(int m, RowScratch* rs) {
    const float* __restrict n0p = rs->n[0].data();
    const float* __restrict n1p = rs->n[1].data();
    const float* __restrict n2p = rs->n[2].data();
    const float* __restrict d0p = rs->d[0].data();
    const float* __restrict d1p = rs->d[1].data();
    const float* __restrict d2p = rs->d[2].data();
    const int32_t* __restrict eroded = rs->eroded.data();
    const int32_t* __restrict forced = rs->forced.data();
    float* __restrict out = rs->w.data();
    for (int i = 0; i < m; ++i) {
      const float n0 = n0p[i], n1 = n1p[i], n2 = n2p[i];
      const float d0 = d0p[i], d1 = d1p[i], d2 = d2p[i];
      const float n_len = std::sqrt(n0 * n0 + n1 * n1 + n2 * n2);
      const float d_len = std::sqrt(d0 * d0 + d1 * d1 + d2 * d2);
      const float dot = n0 * d0 + n1 * d1 + n2 * d2;
      const float cosv = std::clamp(
          dot / (std::max(n_len, 1e-12f) * std::max(d_len, 1e-12f)), 0.0f, 1.0f);
      float w = ExpNeg(std::max(-20.0f * Acos01(cosv), -50.0f));
      w = std::max(w, 1e-4f);
      w = eroded[i] ? w * 1e-8f : w;
      w = std::max(w, 1e-16f);
      out[i] = forced[i] ? 1e-16f : w;
    }
  }

  void Resolve(int64_t frame, int64_t y_lo, int64_t y_hi, const Acc* acc) const {
    const int64_t S = p_.size;
    float* color = p_.out_color + frame * S * S * 3;
    float* depth = p_.out_depth + frame * S * S;
    int32_t* coverage = p_.out_coverage + frame * S * S;
    for (int64_t idx = y_lo * S; idx < y_hi * S; ++idx) {
      const Acc& a = acc[idx - y_lo * S];
      const bool has_valid = a.depth_count > 0;
      const bool has_low = a.low_depth > 0.0f;
      const float wsum = std::max(a.weight, 1e-30f);
      for (int c = 0; c < 3; ++c) {
        color[3 * idx + c] = has_valid ? a.color[c] / wsum : (has_low ? a.low_color[c] : 0.0f);
      }
      const float mean = a.disparity / static_cast<float>(std::max(a.depth_count, 1));
      depth[idx] = has_valid ? 1.0f / mean : (has_low ? a.low_depth : p_.render_near);
      coverage[idx] = (has_valid ? 1 : 0) | (a.color_count > 0 ? 2 : 0);
    }
  }

  const AccumParams& p_;
  const int nt_;
  std::barrier<> barrier_;
  const KeyBits kb_;
  const int64_t num_blocks_;
  struct Scratch {
    std::vector<Vertex> vertices;    // [V, P]
    std::vector<BinnedMesh> meshes;  // [V]
  };
  Vertex* vertices_ = nullptr;
  BinnedMesh* meshes_ = nullptr;
};

ffi::Error AccumulateImpl(ffi::Buffer<ffi::F32> clip, ffi::Buffer<ffi::F32> targets,
                          ffi::Buffer<ffi::S32> faces, ffi::Buffer<ffi::F32> normals,
                          ffi::Buffer<ffi::F32> uv, ffi::Buffer<ffi::F32> flags,
                          ffi::Buffer<ffi::F32> textures, ffi::Buffer<ffi::F32> centers,
                          ffi::Buffer<ffi::S32> valid, int64_t size, int64_t num_threads,
                          float near, float far, float inv_near, float inv_far,
                          float render_near, float tan_half, float two_over_size,
                          ffi::ResultBuffer<ffi::F32> color, ffi::ResultBuffer<ffi::F32> depth,
                          ffi::ResultBuffer<ffi::S32> coverage) {
  auto cd = clip.dimensions();
  auto fd = faces.dimensions();
  auto td = textures.dimensions();
  if (cd.size() != 4 || cd[3] != 4 || fd.size() != 3 || fd[2] != 3 || td.size() != 4 ||
      fd[0] != cd[1] || td[0] != cd[1] || td[1] != td[2] || td[3] != 3) {
    return ffi::Error::InvalidArgument("ivid_accumulate: inconsistent input shapes");
  }
  AccumParams p;
  p.num_frames = cd[0];
  p.num_views = cd[1];
  p.num_verts = cd[2];
  p.num_faces = fd[1];
  p.tex = td[1];
  p.size = size;
  p.near = near;
  p.far = far;
  p.inv_near = inv_near;
  p.inv_far = inv_far;
  p.render_near = render_near;
  p.tan_half = tan_half;
  p.two_over_size = two_over_size;
  p.clip = clip.typed_data();
  p.targets = targets.typed_data();
  p.faces = faces.typed_data();
  p.normals = normals.typed_data();
  p.uv = uv.typed_data();
  p.flags = flags.typed_data();
  p.textures = textures.typed_data();
  p.centers = centers.typed_data();
  p.valid = valid.typed_data();
  p.out_color = color->typed_data();
  p.out_depth = depth->typed_data();
  p.out_coverage = coverage->typed_data();
  if (p.num_faces >= (1ll << 22)) {
    return ffi::Error::InvalidArgument("ivid_accumulate: too many faces per view");
  }
  int nt = static_cast<int>(std::max<int64_t>(1, num_threads));
  nt = std::min<int>(nt, static_cast<int>((size + kRowBlock - 1) / kRowBlock));
  Accumulator accumulator(p, nt);
  accumulator.Run();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(IvidRasterize, RasterizeImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // clip [B, P, 4]
                                  .Arg<ffi::Buffer<ffi::S32>>()   // faces [B, T, 3]
                                  .Arg<ffi::Buffer<ffi::PRED>>()  // cull [B, T]
                                  .Attr<int64_t>("height")
                                  .Attr<int64_t>("width")
                                  .Attr<int64_t>("num_threads")
                                  .Attr<float>("near")
                                  .Attr<float>("far")
                                  .Attr<float>("inv_near")
                                  .Attr<float>("inv_far")
                                  .Ret<ffi::Buffer<ffi::S32>>()    // face [B, H, W]
                                  .Ret<ffi::Buffer<ffi::F32>>()    // bary [B, H, W, 3]
                                  .Ret<ffi::Buffer<ffi::F32>>()    // depth [B, H, W]
                                  .Ret<ffi::Buffer<ffi::PRED>>());  // front [B, H, W]

XLA_FFI_DEFINE_HANDLER_SYMBOL(IvidAccumulate, AccumulateImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // clip [F, V, P, 4]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // targets [F, 4, 4]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // faces [V, T, 3]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // normals [V, P, 3]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // uv [V, P, 2]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // flags [V, P, 3]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // textures [V, N, N, 3]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // centers [V, 3]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // valid [V]
                                  .Attr<int64_t>("size")
                                  .Attr<int64_t>("num_threads")
                                  .Attr<float>("near")
                                  .Attr<float>("far")
                                  .Attr<float>("inv_near")
                                  .Attr<float>("inv_far")
                                  .Attr<float>("render_near")
                                  .Attr<float>("tan_half")
                                  .Attr<float>("two_over_size")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // color [F, S, S, 3]
                                  .Ret<ffi::Buffer<ffi::F32>>()   // depth [F, S, S]
                                  .Ret<ffi::Buffer<ffi::S32>>());  // coverage [F, S, S]
