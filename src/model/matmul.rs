//! Matrix products on host memory through the `gemm` crate (the kernels burn flex uses for its own products):
//! the folded inference network and the host-trained U-Net decoder multiply with these.

/// An operand of [`product`]: values with their row and column strides.
#[derive(Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    row: usize,
    column: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix with `columns` columns.
    pub fn rows(data: &'a [f32], columns: usize) -> Self {
        View {
            data,
            row: columns,
            column: 1,
        }
    }

    /// The transpose of a row-major matrix with `columns` columns.
    pub fn transposed(data: &'a [f32], columns: usize) -> Self {
        View {
            data,
            row: 1,
            column: columns,
        }
    }

    fn fits(&self, rows: usize, columns: usize) -> bool {
        rows == 0
            || columns == 0
            || (rows - 1) * self.row + (columns - 1) * self.column < self.data.len()
    }
}

/// `dst[m×n] = lhs[m×k] · rhs[k×n]` (row-major `dst`), or `+=` with `accumulate`.
pub fn product(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    lhs: View,
    rhs: View,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    // These checks keep the raw-pointer product inside the slices; the shapes come from the convolution that
    // made the buffers, so a mismatch is a bug.
    assert!(dst.len() >= m * n && lhs.fits(m, k) && rhs.fits(k, n));
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: every index the product reads or writes, row·row stride + column·column stride, lies inside its
    // slice (checked above); `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.column as isize,
            lhs.row as isize,
            rhs.data.as_ptr(),
            rhs.column as isize,
            rhs.row as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
