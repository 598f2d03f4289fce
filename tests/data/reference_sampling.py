"""The gallery draw of the LLCM and SYSU-MM01 reference code (process_gallery_llcm / process_gallery_sysu),
written the way those scripts do it: seed Python's random with the trial, walk the sorted identities and the
cameras in order, pick one file of each folder's sorted listing."""
import os
import random


def reference_gallery(root, trial, cameras, ids):
    random.seed(trial)
    files = []
    for pid in sorted(f"{int(i):04d}" for i in ids):
        for camera in cameras:
            folder = os.path.join(root, camera, pid)
            if os.path.isdir(folder):
                files.append(random.choice(sorted([folder + "/" + i for i in os.listdir(folder)])))
    return files
