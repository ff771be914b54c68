# Sourced by the tools that run on a per-class slice of a phantom (tools/seg_pipeline.sh,
# tools/gpu_pseudo_masks.sh): `subset FULL SPLIT N DEST` links the first N images of each class folder of
# FULL/SPLIT, with their true masks (FULL/masks/…), into DEST — a dataset folder the commands read like any other.
subset() {
    local full=$1 split=$2 n=$3 dest=$4 dir class f
    for dir in "$full/$split"/*; do
        class=$(basename "$dir")
        mkdir -p "$dest/$split/$class" "$dest/masks/$split/$class"
        for f in $(ls "$dir" | head -"$n"); do
            ln -sf "$dir/$f" "$dest/$split/$class/$f"
            if [ -f "$full/masks/$split/$class/${f%.*}.png" ]; then
                ln -sf "$full/masks/$split/$class/${f%.*}.png" "$dest/masks/$split/$class/"
            fi
        done
    done
}
